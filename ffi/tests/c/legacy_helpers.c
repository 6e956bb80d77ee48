/*
 * The legacy 1.x helpers of include/legacy/ called from C: return values,
 * edge cases (NULL, small buffers, missing files, bad regexes) and the
 * event and log lines. argv[1] is a scratch directory. Records go to
 * stdout, logs to stderr; ffi/tests/legacy_c.rs compares them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "nprobe_fprintf.h"
#include "common.h"
#include "event.h"
#include "object.h"
#include "whitelist_config.h"

static char g_dir[512];

/* Two calls may be arguments of one call: alternate two buffers. */
static const char *path_in(const char *name)
{
    static char paths[2][1024];
    static int next;
    char *path = paths[next];

    next = 1 - next;
    (void)snprintf(path, sizeof(paths[0]), "%s/%s", g_dir, name);
    return path;
}

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(path_in(name), "w");
    CHECK(f != NULL);
    CHECK(fputs(text, f) >= 0);
    CHECK(fclose(f) == 0);
}

static void test_exec_cmd(void)
{
    char buf[64];
    char small[4];

    CHECK(exec_cmd("printf 'first\\nsecond\\n'", buf, sizeof(buf)) == 0);
    CHECK(strcmp(buf, "first") == 0);
    /* The first line is cut to the buffer, NUL included. */
    CHECK(exec_cmd("echo abcdefgh", small, sizeof(small)) == 0);
    CHECK(strcmp(small, "abc") == 0);
    /* An empty first line is a success with an empty string. */
    CHECK(exec_cmd("echo; echo x", buf, sizeof(buf)) == 0);
    CHECK(buf[0] == '\0');
    /* No output at all is a failure. */
    CHECK(exec_cmd("true", buf, sizeof(buf)) == -1);
    CHECK(exec_cmd("exit 3", buf, sizeof(buf)) == -1);
    /* A long output after the first line is read, not cut mid-way. */
    CHECK(exec_cmd("echo top; seq 1 100000", buf, sizeof(buf)) == 0);
    CHECK(strcmp(buf, "top") == 0);
    CHECK(exec_cmd(NULL, buf, sizeof(buf)) == -1);
    CHECK(exec_cmd("echo x", NULL, 8) == -1);
    CHECK(exec_cmd("echo x", buf, 0) == -1);
    /* One byte: only the NUL fits. */
    CHECK(exec_cmd("echo x", buf, 1) == 0);
    CHECK(buf[0] == '\0');
}

static void test_ip_str(void)
{
    unsigned char v4[IP_LEN] = {192, 168, 10, 254};
    unsigned char lo6[IP6_LEN] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    unsigned char v6[IP6_LEN] = {0x20, 0x01, 0x0d, 0xb8, 0x00, 0x12, 0, 0, 0, 0, 0xab, 0xcd, 1, 2, 3, 4};
    unsigned char mapped[IP6_LEN] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 8, 8, 4, 4};
    unsigned char out[IP6_STR_LEN];
    unsigned char tiny[6];

    ip_str(AF_INET, v4, out, sizeof(out));
    CHECK(strcmp((char *)out, "192.168.10.254") == 0);
    ip_str(AF_INET6, lo6, out, sizeof(out));
    CHECK(strcmp((char *)out, "0:0:0:0:0:0:0.0.0.1") == 0);
    ip_str(AF_INET6, v6, out, sizeof(out));
    CHECK(strcmp((char *)out, "2001:db8:12:0:0:abcd:1.2.3.4") == 0);
    ip_str(AF_INET6, mapped, out, sizeof(out));
    CHECK(strcmp((char *)out, "8.8.4.4") == 0);
    /* Any family other than AF_INET6 is read as IPv4, as in 1.x. */
    ip_str(0, v4, out, sizeof(out));
    CHECK(strcmp((char *)out, "192.168.10.254") == 0);
    /* Too small: cut and terminated. */
    ip_str(AF_INET, v4, tiny, sizeof(tiny));
    CHECK(strcmp((char *)tiny, "192.1") == 0);
    ip_str(AF_INET6, v6, tiny, sizeof(tiny));
    CHECK(strlen((char *)tiny) < sizeof(tiny));
    /* Size 0 leaves the buffer alone; NULLs are ignored. */
    tiny[0] = 'z';
    ip_str(AF_INET, v4, tiny, 0);
    CHECK(tiny[0] == 'z');
    ip_str(AF_INET, NULL, out, sizeof(out));
    CHECK(out[0] == '\0');
    ip_str(AF_INET, v4, NULL, 16);
}

static void test_snprintf(void)
{
    char buf[16];
    char *p = buf;
    int remain = -7;

    CHECK(__snprintf(&p, sizeof(buf), &remain, "%s=%d", "a", 12) == 0);
    CHECK(p == buf + 4 && remain == 12 && strcmp(buf, "a=12") == 0);
    CHECK(__snprintf(&p, remain, &remain, ",%s", "bc") == 0);
    CHECK(p == buf + 7 && remain == 9 && strcmp(buf, "a=12,bc") == 0);
    /* Does not fit (the NUL needs room too): -1, position and remain kept. */
    CHECK(__snprintf(&p, remain, &remain, "%s", "123456789") == -1);
    CHECK(p == buf + 7 && remain == 9);
    CHECK(__snprintf(&p, 0, &remain, "x") == -1);
    CHECK(__snprintf(&p, -1, &remain, "x") == -1);
    CHECK(__snprintf(NULL, 4, &remain, "x") == -1);
    CHECK(__snprintf(&p, 4, NULL, "x") == -1);
    CHECK(__snprintf(&p, 4, &remain, NULL) == -1);
}

static void test_strings(void)
{
    char a[] = "line\n";
    char b[] = "two\n\n";
    char c[] = "";

    split_newline_symbol(a);
    CHECK(strcmp(a, "line") == 0);
    SPLIT_NEWLINE_SYMBOL(b);
    CHECK(strcmp(b, "two\n") == 0);
    split_newline_symbol(c);
    split_newline_symbol(NULL);

    CHECK(is_digit_str("0123") == 1);
    CHECK(is_digit_str("12a") == 0);
    CHECK(is_digit_str("") == 1);
    CHECK(is_digit_str(NULL) == 0);

    CHECK(check_path_for_security("/usr/bin/java") == 0);
    CHECK(check_path_for_security("/usr/bin/x;rm") == 1);
    CHECK(check_path_for_security("/opt/../etc") == 1);
    CHECK(check_path_for_security("$(id)") == 1);
    CHECK(check_path_for_security("") == 0);
    CHECK(check_path_for_security(NULL) == 0);
}

static void test_system(void)
{
    char *t = get_cur_time();
    char *d = get_cur_date();
    char comm[TASK_COMM_LEN];
    char small[3];
    char ip[IP_STR_LEN];

    /* YYYY-MM-DD-hh-mm-ss */
    CHECK(strlen(t) == 19 && t[4] == '-' && t[7] == '-' && t[10] == '-' && t[13] == '-' &&
          t[16] == '-');
    CHECK(strlen(d) == 10 && d[4] == '-' && d[7] == '-');

    CHECK(get_comm(getpid(), comm, sizeof(comm)) == 0);
    CHECK(strncmp(comm, "legacy_helpers", strlen(comm)) == 0 && strlen(comm) > 0);
    CHECK(get_comm(getpid(), small, sizeof(small)) == 0);
    CHECK(strcmp(small, "le") == 0);
    CHECK(get_comm(-1, comm, sizeof(comm)) == -1);
    CHECK(get_comm(getpid(), NULL, 8) == -1);

    CHECK(get_proc_startup_ts(getpid()) > 0);
    CHECK(get_proc_startup_ts(1) >= 0);
    CHECK(get_proc_startup_ts(-5) == -1);

    CHECK(is_exist_mod(NULL) == 0);
    CHECK(is_exist_mod("no_such_module_xyz") == 0);

    CHECK(get_system_ip(NULL, 8) == -1);
    if (get_system_ip(ip, sizeof(ip)) == 0) {
        CHECK(strlen(ip) >= 7 && strncmp(ip, "127.", 4) != 0);
    }

    write_file("src.txt", "payload\n");
    CHECK(copy_file(path_in("dst.txt"), path_in("src.txt")) == 0);
    CHECK(exec_cmd("cat \"$LEGACY_SCRATCH/dst.txt\"", comm, sizeof(comm)) == 0);
    CHECK(strcmp(comm, "payload") == 0);
    CHECK(copy_file(path_in("dst2.txt"), path_in("missing.txt")) == -1);
    CHECK(access(path_in("dst2.txt"), F_OK) != 0);
    CHECK(copy_file(NULL, path_in("src.txt")) == -1);
}

static void test_whitelist(void)
{
    ApplicationsConfig *conf = (ApplicationsConfig *)0x1;

    write_file("apps.conf",
               "# whitelist\n"
               "application = (\n"
               "  { comm = \"^kafka\"; cmdline = \"server.properties\"; },\n"
               "  { comm = \"([\"; cmdline = \"\"; }\n"
               ");\n");
    CHECK(parse_whitelist_config(&conf, path_in("apps.conf")) == 0);
    CHECK(conf != NULL && conf->apps_num == 2);
    CHECK(strcmp(conf->apps[0]->comm, "^kafka") == 0);
    CHECK(strcmp(conf->apps[0]->cmd_line, "server.properties") == 0);
    CHECK(strcmp(conf->apps[1]->comm, "([") == 0 && conf->apps[1]->cmd_line[0] == '\0');
    CHECK(is_str_match_pattern("kafka-broker", conf->apps[0]->comm) == 1);
    CHECK(is_str_match_pattern("zookeeper", conf->apps[0]->comm) == 0);
    /* A pattern that does not compile matches nothing. */
    CHECK(is_str_match_pattern("([", conf->apps[1]->comm) == 0);
    CHECK(is_str_match_pattern("", conf->apps[0]->comm) == 0);
    CHECK(is_str_match_pattern(NULL, conf->apps[0]->comm) == 0);
    CHECK(is_str_match_pattern("x", NULL) == 0);
    whitelist_config_destroy(conf);

    conf = (ApplicationsConfig *)0x1;
    CHECK(parse_whitelist_config(&conf, path_in("missing.conf")) == -1);
    CHECK(conf == NULL);

    write_file("bad.conf", "application = (\n  { comm = \"x\" cmdline = \"y\"; }\n");
    conf = (ApplicationsConfig *)0x1;
    CHECK(parse_whitelist_config(&conf, path_in("bad.conf")) == -1);
    CHECK(conf == NULL);

    write_file("nocmd.conf", "application = ( { comm = \"x\"; } );\n");
    CHECK(parse_whitelist_config(&conf, path_in("nocmd.conf")) == -1);

    CHECK(parse_whitelist_config(NULL, path_in("apps.conf")) == -1);
    CHECK(parse_whitelist_config(&conf, NULL) == -1);
    whitelist_config_destroy(NULL);
}

static void test_objects(void)
{
    struct proc_s p = {.proc_id = 4242};
    struct nm_s n = {.id = 9, .type = NM_TYPE_MNT};
    struct nm_s n_other = {.id = 9, .type = NM_TYPE_NET};
    struct cgroup_s c = {.knid = 3, .type = CGP_TYPE_MEM};
    unsigned int i;

    CHECK(obj_module_init_ok() == 0);
    obj_module_init();
    CHECK(obj_module_init_ok() == 1);
    obj_module_set_maps_fd();
    CHECK(proc_add(&p) == 0 && proc_add(&p) == 0);
    CHECK(proc_put(&p) == 0 && is_proc_exist(&p) == 1);
    CHECK(proc_put(&p) == 0 && is_proc_exist(&p) == 0);
    CHECK(proc_put(&p) == -1);
    CHECK(nm_add(&n) == 0 && is_nm_exist(&n) == 1 && is_nm_exist(&n_other) == 0);
    CHECK(cgrp_add(&c) == 0 && is_cgrp_exist(&c) == 1);
    /* The 1.x table sizes: 100 cgroups. */
    for (i = 0; i < 99; i++) {
        struct cgroup_s more = {.knid = 100 + i, .type = CGP_TYPE_PIDS};
        CHECK(cgrp_add(&more) == 0);
    }
    {
        struct cgroup_s full = {.knid = 99999, .type = CGP_TYPE_PIDS};
        CHECK(cgrp_add(&full) == -1);
        CHECK(cgrp_add(&c) == 0); /* a known one still counts up */
    }
    CHECK(proc_add(NULL) == -1 && proc_put(NULL) == -1 && is_proc_exist(NULL) == 0);
    CHECK(cgrp_add(NULL) == -1 && nm_put(NULL) == -1 && is_cgrp_exist(NULL) == 0);
    obj_module_exit();
    CHECK(obj_module_init_ok() == 0 && is_nm_exist(&n) == 0 && is_cgrp_exist(&c) == 0);
}

static void test_events_and_logs(void)
{
    DEBUG("dbg %d\n", 1);
    INFO("info %s\n", "two");
    WARN("warn %u", 3u);
    ERROR("error %.1f\n", 4.0);
    (void)nprobe_fprintf(stdout, "|mark|before_events|\n");
    report_logs("disk", "sda", "util", EVT_SEC_WARN, "util %d%% on %s", 97, "sda");
    report_logs("disk", "sdb", "util", EVT_SEC_FATAL, "a|b\nc");
    report_logs("proc", NULL, NULL, EVT_SEC_INFO, "%s", "no id");
    /* Refused, with a logged reason: no entity name, an unknown level. */
    report_logs(NULL, "x", "m", EVT_SEC_ERROR, "dropped");
    report_logs("disk", "x", "m", (enum evt_sec_e)9, "dropped");
    /* With a period, one entity reports once. */
    init_event_mgr(600, NULL);
    report_logs("net", "eth0", "drops", EVT_SEC_ERROR, "first");
    report_logs("net", "eth0", "drops", EVT_SEC_ERROR, "second");
    report_logs("net", "eth1", "drops", EVT_SEC_ERROR, "other");
    init_event_mgr(0, (char *)"zh_CN");
    init_event_mgr(0, (char *)"en_US");
    report_logs("net", "eth0", "drops", EVT_SEC_ERROR, "third");
    (void)nprobe_fprintf(stdout, "|mark|after_events|\n");
}

int main(int argc, char **argv)
{
    CHECK(argc == 2);
    (void)snprintf(g_dir, sizeof(g_dir), "%s", argv[1]);
    CHECK(setenv("LEGACY_SCRATCH", g_dir, 1) == 0);
    test_exec_cmd();
    test_ip_str();
    test_snprintf();
    test_strings();
    test_system();
    test_whitelist();
    test_objects();
    test_events_and_logs();
    (void)nprobe_fprintf(stdout, "|done|legacy|\n");
    return 0;
}
