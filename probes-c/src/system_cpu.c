/*
 * system_cpu: CPU time from /proc/stat (meta/system_cpu.meta).
 *
 * One record per cpu line: the per-CPU lines (cpu0, cpu1, ...) as they are
 * read, then the aggregate line "cpu", which also carries the system-wide
 * ctxt, processes, procs_running and procs_blocked (null on the per-CPU
 * records). Times are in USER_HZ ticks as the kernel prints them; a column
 * an older kernel lacks is null.
 * SPDX-License-Identifier: MulanPSL-2.0
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gopher.h"
#include "probes.h"
#include "proc_util.h"

#define TABLE "system_cpu"
#define LINE_MAX_LEN 1024 /* cpu lines are < 200 bytes; longer lines are skipped */
#define VALUE_LEN 24

enum cpu_field {
    F_CPU,
    F_USER,
    F_NICE,
    F_SYSTEM,
    F_IDLE,
    F_IOWAIT,
    F_IRQ,
    F_SOFTIRQ,
    F_STEAL,
    F_GUEST,
    F_GUEST_NICE,
    F_CTXT,
    F_PROCESSES,
    F_PROCS_RUNNING,
    F_PROCS_BLOCKED,
    F_COUNT
};

/* Record order = meta order (checked by the crate's tests). */
static const char *const cpu_fields[F_COUNT + 1] = {
    [F_CPU] = "cpu",
    [F_USER] = "user",
    [F_NICE] = "nice",
    [F_SYSTEM] = "system",
    [F_IDLE] = "idle",
    [F_IOWAIT] = "iowait",
    [F_IRQ] = "irq",
    [F_SOFTIRQ] = "softirq",
    [F_STEAL] = "steal",
    [F_GUEST] = "guest",
    [F_GUEST_NICE] = "guest_nice",
    [F_CTXT] = "ctxt",
    [F_PROCESSES] = "processes",
    [F_PROCS_RUNNING] = "procs_running",
    [F_PROCS_BLOCKED] = "procs_blocked",
    [F_COUNT] = NULL,
};

/* The system-wide lines and the field each one fills. */
static const struct {
    const char *name;
    enum cpu_field field;
} system_lines[] = {
    {"ctxt", F_CTXT},
    {"processes", F_PROCESSES},
    {"procs_running", F_PROCS_RUNNING},
    {"procs_blocked", F_PROCS_BLOCKED},
};

struct cpu_record {
    char values[F_COUNT][VALUE_LEN];
};

const char *const *gopher_probe_system_cpu_fields(void)
{
    return cpu_fields;
}

/* "cpu" or "cpu<digits>". */
static int is_cpu_name(const char *name)
{
    size_t len = strlen(name);

    return strncmp(name, "cpu", 3) == 0 && len < VALUE_LEN &&
           strspn(name + 3, "0123456789") == len - 3;
}

/* Parses the cpu line in `line` into rec; returns 0, or -1 if it is not one. */
static int parse_cpu_line(char *line, struct cpu_record *rec)
{
    char *cursor = line;
    char *name = next_token(&cursor);

    memset(rec, 0, sizeof *rec);
    if (name == NULL || !is_cpu_name(name)) {
        return -1;
    }
    memcpy(rec->values[F_CPU], name, strlen(name) + 1);
    for (int f = F_USER; f <= F_GUEST_NICE; f++) {
        char *tok = next_token(&cursor);
        if (tok == NULL) {
            break; /* older kernel: the remaining columns stay null */
        }
        (void)copy_number(rec->values[f], VALUE_LEN, tok); /* not a number: null */
    }
    return 0;
}

/* Emits rec; returns 0, or -1 if stdout is gone (the daemon closed it). */
static int emit(const struct cpu_record *rec)
{
    const char *values[F_COUNT];
    gopher_status st;

    for (int f = 0; f < F_COUNT; f++) {
        values[f] = rec->values[f][0] != '\0' ? rec->values[f] : NULL;
    }
    st = gopher_record_emit(TABLE, values, F_COUNT);
    if (st == GOPHER_OK) {
        return 0;
    }
    if (st == GOPHER_ERR_IO) {
        return -1;
    }
    (void)gopher_log(GOPHER_LOG_WARN, "system_cpu: record refused");
    return 0;
}

/* Fills the system-wide field of a "<name> <number>" line, if it is one. */
static void parse_system_line(char *line, struct cpu_record *total)
{
    char *cursor = line;
    char *name = next_token(&cursor);
    char *value = next_token(&cursor);

    if (name == NULL || value == NULL) {
        return;
    }
    for (size_t i = 0; i < sizeof system_lines / sizeof system_lines[0]; i++) {
        if (strcmp(name, system_lines[i].name) == 0) {
            (void)copy_number(total->values[system_lines[i].field], VALUE_LEN, value);
            return;
        }
    }
}

static int collect(void)
{
    char path[PROC_PATH_MAX];
    char line[LINE_MAX_LEN];
    struct cpu_record rec;
    struct cpu_record total;
    int have_total = 0;
    int rc = 0;
    FILE *f;

    if (proc_path(path, sizeof path, "stat") != 0) {
        (void)gopher_log(GOPHER_LOG_ERROR, "system_cpu: proc root path too long");
        return -1;
    }
    f = fopen(path, "r");
    if (f == NULL) {
        log_errno(GOPHER_LOG_ERROR, "system_cpu: cannot open", path, errno);
        return -1;
    }
    memset(&total, 0, sizeof total);
    for (;;) {
        int r = next_line(f, line, sizeof line);
        if (r == LINE_EOF) {
            break;
        }
        if (r == LINE_ERROR) {
            log_errno(GOPHER_LOG_ERROR, "system_cpu: cannot read", path, errno);
            rc = -1;
            break;
        }
        if (r == LINE_TOO_LONG) {
            continue; /* intr and softirq lines can be long; not used */
        }
        if (strncmp(line, "cpu", 3) == 0) {
            if (parse_cpu_line(line, &rec) != 0) {
                continue;
            }
            if (strcmp(rec.values[F_CPU], "cpu") == 0) {
                /* Keep the system-wide values read so far (none, normally). */
                for (int fi = F_USER; fi <= F_GUEST_NICE; fi++) {
                    memcpy(total.values[fi], rec.values[fi], VALUE_LEN);
                }
                memcpy(total.values[F_CPU], rec.values[F_CPU], VALUE_LEN);
                have_total = 1;
            } else if (emit(&rec) != 0) {
                rc = -1;
                break;
            }
        } else {
            parse_system_line(line, &total);
        }
    }
    if (fclose(f) != 0 && rc == 0) {
        log_errno(GOPHER_LOG_WARN, "system_cpu: close", path, errno);
    }
    if (rc != 0) {
        return rc;
    }
    if (!have_total) {
        (void)gopher_log(GOPHER_LOG_ERROR, "system_cpu: no aggregate \"cpu\" line in /proc/stat");
        return -1;
    }
    return emit(&total);
}

static int system_cpu_entry(const struct probe_params *params)
{
    (void)params;
    return collect();
}

const struct gopher_probe_desc gopher_probe_system_cpu = {
    GOPHER_ABI_VERSION,
    "system_cpu",
    system_cpu_entry,
    5,
};
