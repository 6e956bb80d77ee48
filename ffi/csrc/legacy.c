/*
 * The C half of the legacy 1.x headers in include/legacy/ (common.h,
 * event.h, whitelist_config.h): the variadic log and event functions and
 * the small helpers 1.x probes call. The rest (whitelist parsing, the
 * object registry, event de-duplication) is Rust, ffi/src/legacy.rs.
 *
 * Everything here checks its pointers: a NULL argument gives the failure
 * value of the function, never a crash.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <limits.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <net/if.h>

#include "gopher.h"
#include "legacy/common.h"
#include "legacy/event.h"
#include "legacy/whitelist_config.h"
#include "legacy_internal.h"

/*
 * A cdylib exports only Rust symbols, so on x86_64 and aarch64 each public
 * name here is a Rust tail-jump trampoline (ffi/src/legacy.rs, as for
 * nprobe_fprintf) to the C function gopher_legacy_<name> defined below.
 * Elsewhere build.rs passes GOPHER_NPROBE_FPRINTF_IN_C and the C functions
 * carry the public names themselves.
 */
#ifdef GOPHER_NPROBE_FPRINTF_IN_C
#define LEGACY(name) name
#else
#define LEGACY(name) gopher_legacy_##name
void LEGACY(debug_logs)(const char *format, ...) __attribute__((format(printf, 1, 2)));
void LEGACY(info_logs)(const char *format, ...) __attribute__((format(printf, 1, 2)));
void LEGACY(warn_logs)(const char *format, ...) __attribute__((format(printf, 1, 2)));
void LEGACY(error_logs)(const char *format, ...) __attribute__((format(printf, 1, 2)));
void LEGACY(split_newline_symbol)(char *s);
int LEGACY(__snprintf)(char **buf, const int bufLen, int *remainLen, const char *format, ...)
    __attribute__((format(printf, 4, 5)));
char LEGACY(is_digit_str)(const char *s);
int LEGACY(check_path_for_security)(const char *path);
int LEGACY(is_str_match_pattern)(const char *string, char *pattern);
char *LEGACY(get_cur_date)(void);
char *LEGACY(get_cur_time)(void);
void LEGACY(ip_str)(unsigned int family, unsigned char *ip, unsigned char *ip_str,
                    unsigned int ip_str_size);
int LEGACY(exec_cmd)(const char *cmd, char *buf, unsigned int buf_len);
char LEGACY(is_exist_mod)(const char *mod);
int LEGACY(get_system_uuid)(char *buffer, unsigned int size);
int LEGACY(get_system_ip)(char ip_str[], unsigned int size);
int LEGACY(get_comm)(int pid, char comm_str[], unsigned int size);
int LEGACY(get_proc_startup_ts)(int pid);
int LEGACY(copy_file)(const char *dst_file, const char *src_file);
void LEGACY(report_logs)(const char *entityName, const char *entityId, const char *metrics,
                         enum evt_sec_e sec, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
#endif

/* ---- log macros ------------------------------------------------------- */

#define LEGACY_LOG_BUF 4096

static void legacy_vlog(uint32_t level, const char *format, va_list ap)
    __attribute__((format(printf, 2, 0)));

static void legacy_vlog(uint32_t level, const char *format, va_list ap)
{
    char buf[LEGACY_LOG_BUF];
    size_t len;

    if (format == NULL) {
        return;
    }
    if (vsnprintf(buf, sizeof buf, format, ap) < 0) {
        return;
    }
    /* The legacy messages end in "\n"; one log line needs none. */
    len = strlen(buf);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) {
        buf[--len] = '\0';
    }
    (void)gopher_log(level, buf);
}

#define LEGACY_LOG_FN(name, level)              \
    void LEGACY(name)(const char *format, ...)  \
    {                                           \
        va_list ap;                             \
        va_start(ap, format);                   \
        legacy_vlog((level), format, ap);       \
        va_end(ap);                             \
    }

LEGACY_LOG_FN(debug_logs, GOPHER_LOG_DEBUG)
LEGACY_LOG_FN(info_logs, GOPHER_LOG_INFO)
LEGACY_LOG_FN(warn_logs, GOPHER_LOG_WARN)
LEGACY_LOG_FN(error_logs, GOPHER_LOG_ERROR)

/* ---- strings ---------------------------------------------------------- */

void LEGACY(split_newline_symbol)(char *s)
{
    size_t len;

    if (s == NULL) {
        return;
    }
    len = strlen(s);
    if (len > 0 && s[len - 1] == '\n') {
        s[len - 1] = '\0';
    }
}

int LEGACY(__snprintf)(char **buf, const int bufLen, int *remainLen, const char *format, ...)
{
    va_list ap;
    int n;

    if (buf == NULL || *buf == NULL || remainLen == NULL || format == NULL || bufLen <= 0) {
        return -1;
    }
    va_start(ap, format);
    n = vsnprintf(*buf, (size_t)bufLen, format, ap);
    va_end(ap);
    if (n < 0 || n >= bufLen) {
        return -1;
    }
    *buf += n;
    *remainLen = bufLen - n;
    return 0;
}

char LEGACY(is_digit_str)(const char *s)
{
    if (s == NULL) {
        return 0;
    }
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return 0;
        }
    }
    return 1;
}

int LEGACY(check_path_for_security)(const char *path)
{
    static const char *const risky[] = {
        "|", ";", "&", "$", ">", "<", "(", ")", "./", "/.", "?", "*",
        "'", "`", "[", "]", "\\", "!", "\n",
    };
    size_t i;

    if (path == NULL) {
        return 0;
    }
    for (i = 0; i < sizeof risky / sizeof risky[0]; i++) {
        if (strstr(path, risky[i]) != NULL) {
            return 1;
        }
    }
    return 0;
}

int LEGACY(is_str_match_pattern)(const char *string, char *pattern)
{
    regex_t re;
    int rc;

    if (string == NULL || pattern == NULL || string[0] == '\0' || pattern[0] == '\0') {
        return 0;
    }
    if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0) {
        return 0;
    }
    rc = regexec(&re, string, 0, NULL, 0);
    regfree(&re);
    return rc == 0 ? 1 : 0;
}

/* ---- time ------------------------------------------------------------- */

/* Formats the local time into out (TM_STR_LEN bytes); "" on failure. */
static char *legacy_now(char *out, const char *fmt)
{
    struct tm tm;
    time_t t = time(NULL);

    if (localtime_r(&t, &tm) == NULL || strftime(out, TM_STR_LEN, fmt, &tm) == 0) {
        out[0] = '\0';
    }
    return out;
}

/* Each has its own buffer per thread, as each had its own in 1.x. */
char *LEGACY(get_cur_date)(void)
{
    static _Thread_local char out[TM_STR_LEN];
    return legacy_now(out, "%Y-%m-%d");
}

char *LEGACY(get_cur_time)(void)
{
    static _Thread_local char out[TM_STR_LEN];
    return legacy_now(out, "%Y-%m-%d-%H-%M-%S");
}

/* ---- addresses -------------------------------------------------------- */

static void ip6_text(const unsigned char *ip, char *out, size_t size)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    size_t used = 0;
    int i;

    if (memcmp(ip, mapped, sizeof mapped) == 0) {
        (void)snprintf(out, size, "%u.%u.%u.%u", ip[IP4_BYTE_1_IN_IP6], ip[IP4_BYTE_2_IN_IP6],
                       ip[IP4_BYTE_3_IN_IP6], ip[IP4_BYTE_4_IN_IP6]);
        return;
    }
    /* Six hex groups without leading zeros, then the low 32 bits dotted. */
    out[0] = '\0';
    for (i = 0; i < 6; i++) {
        unsigned group = ((unsigned)ip[2 * i] << 8) | ip[2 * i + 1];
        int n = snprintf(out + used, size - used, "%x:", group);
        if (n < 0 || (size_t)n >= size - used) {
            return; /* truncated, still terminated */
        }
        used += (size_t)n;
    }
    (void)snprintf(out + used, size - used, "%u.%u.%u.%u", ip[12], ip[13], ip[14], ip[15]);
}

void LEGACY(ip_str)(unsigned int family, unsigned char *ip, unsigned char *ip_str,
            unsigned int ip_str_size)
{
    char *out = (char *)ip_str;

    if (out == NULL || ip_str_size == 0) {
        return;
    }
    out[0] = '\0';
    if (ip == NULL) {
        return;
    }
    if (family == AF_INET6) {
        ip6_text(ip, out, ip_str_size);
        return;
    }
    (void)snprintf(out, ip_str_size, "%u.%u.%u.%u", ip[IP4_BYTE_1], ip[IP4_BYTE_2],
                   ip[IP4_BYTE_3], ip[IP4_BYTE_4]);
}

/* ---- commands and files ----------------------------------------------- */

/* Most output read past the first line before the pipe is closed. */
#define EXEC_CMD_DRAIN_MAX (1024u * 1024u)

/* Copies the first line of stream (without its newline) into buf, cut to
 * buf_len - 1 bytes; the rest of the line is read and dropped. 0, or -1 at
 * end of file before any byte. */
static int first_line(FILE *f, char *buf, unsigned int buf_len)
{
    unsigned int used = 0;
    int c;
    int any = 0;

    while ((c = fgetc(f)) != EOF) {
        any = 1;
        if (c == '\n') {
            break;
        }
        if (used + 1 < buf_len) {
            buf[used++] = (char)c;
        }
    }
    buf[used] = '\0';
    return any ? 0 : -1;
}

/* Reads and drops what the command still prints (up to a bound), so that
 * it is not killed by SIGPIPE, or made to report EPIPE, mid-way. */
static void drain(FILE *f)
{
    char sink[4096];
    size_t total = 0;
    size_t n;

    while (total < EXEC_CMD_DRAIN_MAX && (n = fread(sink, 1, sizeof sink, f)) > 0) {
        total += n;
    }
}

int LEGACY(exec_cmd)(const char *cmd, char *buf, unsigned int buf_len)
{
    FILE *f;
    int rc;

    if (cmd == NULL || buf == NULL || buf_len == 0) {
        return -1;
    }
    buf[0] = '\0';
    /* Anything the probe buffered must not be duplicated by the child. */
    (void)fflush(NULL);
    f = popen(cmd, "r");
    if (f == NULL) {
        return -1;
    }
    rc = first_line(f, buf, buf_len);
    drain(f);
    (void)pclose(f);
    return rc;
}

static int read_first_line(const char *path, char *buf, unsigned int buf_len)
{
    FILE *f;
    int rc;

    if (buf == NULL || buf_len == 0) {
        return -1;
    }
    buf[0] = '\0';
    f = fopen(path, "re");
    if (f == NULL) {
        return -1;
    }
    rc = first_line(f, buf, buf_len);
    (void)fclose(f);
    return rc;
}

char LEGACY(is_exist_mod)(const char *mod)
{
    char line[LINE_BUF_LEN];
    size_t n;
    FILE *f;
    char found = 0;

    if (mod == NULL || mod[0] == '\0') {
        return 0;
    }
    n = strlen(mod);
    f = fopen("/proc/modules", "re");
    if (f == NULL) {
        return 0;
    }
    while (!found && fgets(line, sizeof line, f) != NULL) {
        found = (char)(strncmp(line, mod, n) == 0 && line[n] == ' ');
    }
    (void)fclose(f);
    return found;
}

int LEGACY(get_system_uuid)(char *buffer, unsigned int size)
{
    return read_first_line("/sys/class/dmi/id/product_uuid", buffer, size);
}

int LEGACY(get_system_ip)(char ip_str_out[], unsigned int size)
{
    struct ifaddrs *all = NULL;
    struct ifaddrs *i;
    int rc = -1;

    if (ip_str_out == NULL || size == 0) {
        return -1;
    }
    ip_str_out[0] = '\0';
    if (getifaddrs(&all) != 0) {
        return -1;
    }
    for (i = all; i != NULL; i = i->ifa_next) {
        const struct sockaddr_in *sin;
        unsigned char *b;

        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET ||
            (i->ifa_flags & IFF_LOOPBACK) != 0) {
            continue;
        }
        sin = (const struct sockaddr_in *)(const void *)i->ifa_addr;
        b = (unsigned char *)&sin->sin_addr.s_addr;
        if (b[0] == 127) {
            continue;
        }
        LEGACY(ip_str)(AF_INET, b, (unsigned char *)ip_str_out, size);
        rc = 0;
        break;
    }
    freeifaddrs(all);
    return rc;
}

int LEGACY(get_comm)(int pid, char comm_str[], unsigned int size)
{
    char path[PATH_LEN];

    (void)snprintf(path, sizeof path, "/proc/%d/comm", pid);
    return read_first_line(path, comm_str, size);
}

int LEGACY(get_proc_startup_ts)(int pid)
{
    char path[PATH_LEN];
    char line[1024];
    char *p;
    int field;

    (void)snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (read_first_line(path, line, sizeof line) != 0) {
        return -1;
    }
    /* The name (field 2) may hold spaces and ')': fields start after the
     * last ')'. Field 3 is the state; the start time is field 22. */
    p = strrchr(line, ')');
    if (p == NULL) {
        return -1;
    }
    p++;
    for (field = 3; field <= 22; field++) {
        while (*p == ' ') {
            p++;
        }
        if (*p == '\0') {
            return -1;
        }
        if (field == 22) {
            long long v = strtoll(p, NULL, 10);
            return v > INT_MAX ? INT_MAX : (int)v;
        }
        while (*p != ' ' && *p != '\0') {
            p++;
        }
    }
    return -1;
}

int LEGACY(copy_file)(const char *dst_file, const char *src_file)
{
    char buf[8192];
    FILE *in;
    FILE *out;
    size_t n;
    int rc = 0;

    if (dst_file == NULL || src_file == NULL) {
        return -1;
    }
    in = fopen(src_file, "rbe");
    if (in == NULL) {
        return -1;
    }
    out = fopen(dst_file, "wbe");
    if (out == NULL) {
        (void)fclose(in);
        return -1;
    }
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        if (fwrite(buf, 1, n, out) != n) {
            rc = -1;
            break;
        }
    }
    if (ferror(in)) {
        rc = -1;
    }
    (void)fclose(in);
    if (fclose(out) != 0) {
        rc = -1;
    }
    return rc;
}

/* ---- events ----------------------------------------------------------- */

static const char *const sec_text[EVT_SEC_MAX] = {"INFO", "WARN", "ERROR", "FATAL"};

void LEGACY(report_logs)(const char *entityName, const char *entityId, const char *metrics,
                 enum evt_sec_e sec, const char *fmt, ...)
{
    char body[LEGACY_LOG_BUF];
    char when[64];
    struct tm tm;
    time_t t = time(NULL);
    size_t used;
    int n;
    va_list ap;

    if ((unsigned)sec >= EVT_SEC_MAX) {
        LEGACY(error_logs)("report_logs: unknown level %d (EVT_SEC_INFO..EVT_SEC_FATAL): event of "
                   "entity %s dropped",
                   (int)sec, entityName != NULL ? entityName : "(null)");
        return;
    }
    if (localtime_r(&t, &tm) == NULL || strftime(when, sizeof when, "%a %b %e %H:%M:%S %Y", &tm) == 0) {
        when[0] = '\0';
    }
    n = snprintf(body, sizeof body, "%s %s Entity(%s) ", when, sec_text[sec],
                 entityId != NULL ? entityId : "");
    used = n < 0 ? 0 : ((size_t)n >= sizeof body ? sizeof body - 1 : (size_t)n);
    if (fmt != NULL) {
        va_start(ap, fmt);
        (void)vsnprintf(body + used, sizeof body - used, fmt, ap);
        va_end(ap);
    }
    /* Keep the order with records the probe printed through stdio. */
    (void)fflush(stdout);
    (void)gopher_legacy_event_emit(entityName, entityId, metrics, (int)sec, body);
}
