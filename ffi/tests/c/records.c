/* Record emission through gopher_record_emit, gopher_record_emit_line and
 * nprobe_fprintf; refusals with the right status; logging; descriptors. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "check.h"
#include "nprobe_fprintf.h"

static int demo_entry(const struct probe_params *params)
{
    (void)params;
    return 0;
}

static void emits_records(void)
{
    const char *cpu[] = {"cpu0", "1", NULL, "", "4"};
    CHECK_STATUS(gopher_record_emit("system_cpu", cpu, 5), GOPHER_OK);

    int n = nprobe_fprintf(stdout, "|demo|%s|%d|%.1f|\n", "k", 42, 1.5);
    CHECK(n == (int)strlen("|demo|k|42|1.5|\n"));
    /* Several lines in one call; the last one without a newline. */
    n = nprobe_fprintf(stdout, "|multi|%d|\n|multi|%d|\n|multi|%d|", 1, 2, 3);
    CHECK(n > 0);
    /* Not a record: goes to the debug log (stderr), not to stdout. */
    CHECK(nprobe_fprintf(stdout, "hello %s\n", "debug") == 12);
    /* Any other stream is plain fprintf. */
    CHECK(nprobe_fprintf(stderr, "plain %d\n", 7) == 8);

    CHECK_STATUS(gopher_record_emit_line("|line|x|"), GOPHER_OK);
    CHECK_STATUS(gopher_record_emit_line("|line|y|\n"), GOPHER_OK);
    CHECK_STATUS(gopher_record_emit("empty", NULL, 0), GOPHER_OK);
}

static void refuses_bad_input(void)
{
    const char *pipe_value[] = {"k", "a|b"};
    const char *newline_value[] = {"k", "a\nb"};
    const char *cr_value[] = {"k", "a\rb"};
    const char *bad_utf8[] = {"k", "\xff"};
    static char long_value[9000];
    const char *too_long[] = {"k", long_value};

    memset(long_value, 'x', sizeof long_value - 1);
    CHECK_STATUS(gopher_record_emit("t", pipe_value, 2), GOPHER_ERR_INVALID_VALUE);
    CHECK_STATUS(gopher_record_emit("t", newline_value, 2), GOPHER_ERR_INVALID_VALUE);
    CHECK_STATUS(gopher_record_emit("t", cr_value, 2), GOPHER_ERR_INVALID_VALUE);
    CHECK_STATUS(gopher_record_emit("t", bad_utf8, 2), GOPHER_ERR_INVALID_UTF8);
    CHECK_STATUS(gopher_record_emit("t", too_long, 2), GOPHER_ERR_TOO_LONG);
    CHECK_STATUS(gopher_record_emit("", pipe_value, 1), GOPHER_ERR_INVALID_VALUE);
    CHECK_STATUS(gopher_record_emit(NULL, pipe_value, 1), GOPHER_ERR_NULL);
    CHECK_STATUS(gopher_record_emit("t", NULL, 1), GOPHER_ERR_NULL);
    CHECK_STATUS(gopher_record_emit_line(NULL), GOPHER_ERR_NULL);
    CHECK_STATUS(gopher_record_emit_line("no leading bar|"), GOPHER_ERR_INVALID_VALUE);
    CHECK_STATUS(gopher_record_emit_line("|two|\n|lines|"), GOPHER_ERR_INVALID_VALUE);
    CHECK_STATUS(gopher_log(GOPHER_LOG_INFO, NULL), GOPHER_ERR_NULL);
    CHECK_STATUS(gopher_log(99, "x"), GOPHER_ERR_INVALID_VALUE);

    /* Longer than the 8192 + 1 bytes nprobe_fprintf formats: refused. */
    CHECK(nprobe_fprintf(stdout, "|t|%s|\n", long_value) == -1);
    /* A refused line makes nprobe_fprintf fail, the valid ones still go. */
    CHECK(nprobe_fprintf(stdout, "|ok|1|\n|bad|\x01|\n") == -1);

    const char *s = gopher_status_str(GOPHER_ERR_TOO_LONG);
    CHECK(s != NULL && strstr(s, "8192") != NULL);
    CHECK(strcmp(gopher_status_str(12345), "unknown gopher_status") == 0);
}

static void logs_to_stderr(void)
{
    CHECK_STATUS(gopher_log(GOPHER_LOG_WARN, "multi\nline"), GOPHER_OK);
    CHECK_STATUS(gopher_log(GOPHER_LOG_ERROR, "it broke"), GOPHER_OK);
}

static void checks_descriptors(void)
{
    struct gopher_probe_desc ok = {GOPHER_ABI_VERSION, "demo", demo_entry, 5};
    struct gopher_probe_desc newer = {GOPHER_ABI_VERSION + 1, "demo", demo_entry, 5};
    struct gopher_probe_desc other_major = {2u << 16, "demo", demo_entry, 5};
    struct gopher_probe_desc no_entry = {GOPHER_ABI_VERSION, "demo", NULL, 5};

    CHECK_STATUS(gopher_probe_desc_check(&ok), GOPHER_OK);
    CHECK_STATUS(gopher_probe_desc_check(&newer), GOPHER_ERR_ABI_MISMATCH);
    CHECK_STATUS(gopher_probe_desc_check(&other_major), GOPHER_ERR_ABI_MISMATCH);
    CHECK_STATUS(gopher_probe_desc_check(&no_entry), GOPHER_ERR_NULL);
    CHECK_STATUS(gopher_probe_desc_check(NULL), GOPHER_ERR_NULL);
}

/* A closed pipe (the daemon went away) is GOPHER_ERR_IO, not a crash. */
static void write_errors_are_reported(void)
{
    int fds[2];
    int saved = dup(STDOUT_FILENO);
    const char *v[] = {"k"};

    CHECK(saved >= 0);
    CHECK(signal(SIGPIPE, SIG_IGN) != SIG_ERR);
    CHECK(pipe(fds) == 0);
    CHECK(close(fds[0]) == 0);
    CHECK(dup2(fds[1], STDOUT_FILENO) == STDOUT_FILENO);
    CHECK(close(fds[1]) == 0);
    gopher_status st = gopher_record_emit("t", v, 1);
    CHECK(dup2(saved, STDOUT_FILENO) == STDOUT_FILENO);
    CHECK(close(saved) == 0);
    CHECK_STATUS(st, GOPHER_ERR_IO);
}

int main(void)
{
    emits_records();
    refuses_bad_input();
    logs_to_stderr();
    checks_descriptors();
    write_errors_are_reported();
    CHECK_STATUS(gopher_record_emit_line("|done|records|"), GOPHER_OK);
    return 0;
}
