/*
 * A stand-in for a legacy 2.x probe binary: the probe's side of the 2.x
 * message queue, written from the layout in docs/compat.md (section 10), to
 * test the agent's side (tests/integration/legacy_bin.rs).
 *
 * Like a real 2.x probe it opens the queue keyed ftok("/usr/bin/gala-gopher",
 * 'g') without creating it (exit 255 when it is missing), drains the
 * messages of its type without waiting and keeps the last one (ORing their
 * flags), and refuses to run when no message was queued before its start.
 * It keeps polling, so a new message is picked up while it runs. After each
 * message, and then every `period` seconds, it prints:
 *
 *   |legacy_ipc_probe|<name>|<period>|<sample_period>|<range>|<snoopers>|
 *       <first pid>|<containers>|<flags>|<messages>|<pid>|<dev>|
 *
 * Usage: ipc_probe <msg type> <name>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <time.h>
#include <unistd.h>

/* The 2.x (2.0.2) params struct, declared here from the documented layout. */
struct params_2x {
    unsigned int period;
    unsigned int sample_period;
    unsigned int latency_thr;
    unsigned int offline_thr;
    unsigned int drops_count_thr;
    unsigned int kafka_port;
    char logs;
    char metrics_flags;
    char env_flags;
    char support_ssl;
    char res_percent_upper;
    char res_percent_lower;
    char continuous_sampling_flag;
    char multi_instance_flag;
    char native_stack_flag;
    char cluster_ip_backend;
    char target_dev[32];
    char elf_path[512];
    unsigned int l7_probe_proto_flags;
    unsigned int svg_period;
    unsigned int perf_sample_period;
    char pyroscope_server[64];
    char output_dir[256];
    char flame_dir[256];
    unsigned int cadvisor_port;
    unsigned int profiling_chan;
    unsigned int min_exec_dur;
    unsigned int min_aggr_dur;
};

_Static_assert(sizeof(struct params_2x) == 1184, "2.x probe_params is 1184 bytes");
_Static_assert(offsetof(struct params_2x, sample_period) == 4, "sample_period");
_Static_assert(offsetof(struct params_2x, target_dev) == 34, "target_dev");
_Static_assert(offsetof(struct params_2x, l7_probe_proto_flags) == 580, "l7 flags");
_Static_assert(offsetof(struct params_2x, cadvisor_port) == 1168, "cadvisor_port");

struct state {
    int have;
    struct params_2x params;
    uint32_t range;
    uint32_t snoopers;
    uint32_t first_pid;
    uint32_t containers;
    uint32_t flags;
    unsigned long messages;
};

#define BODY_MAX (64 * 1024)
struct msg {
    long mtype;
    char body[BODY_MAX];
};

static uint16_t rd16(const char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* Parses one message body; 0 when it holds the documented TLVs. */
static int parse(const char *b, size_t n, struct state *st)
{
    if (n < 8) {
        return -1;
    }
    uint32_t len = rd32(b + 4);
    if (len + 8 > n) {
        return -1;
    }
    const char *p = b + 8, *end = b + 8 + len;
    struct state next = *st;
    next.snoopers = 0;
    next.first_pid = 0;
    next.containers = 0;
    int seen = 0;
    uint32_t count = 0;
    while (p + 4 <= end) {
        uint16_t type = rd16(p), tlen = rd16(p + 2);
        const char *v = p + 4;
        if (v + tlen > end) {
            return -1;
        }
        switch (type) {
        case 100:
            if (tlen != 4) return -1;
            next.range = rd32(v);
            seen |= 1;
            break;
        case 101:
            if (tlen != sizeof(struct params_2x)) return -1;
            memcpy(&next.params, v, sizeof(next.params));
            seen |= 2;
            break;
        case 102:
            if (tlen != 4) return -1;
            count = rd32(v);
            seen |= 4;
            break;
        case 0:
            if (tlen != 4) return -1;
            if (next.snoopers == 0) next.first_pid = rd32(v);
            next.snoopers++;
            break;
        case 1:
            if (tlen < 4) return -1;
            next.snoopers++;
            next.containers++;
            break;
        default:
            return -1;
        }
        p = v + tlen;
    }
    if (p != end || seen != 7 || count != next.snoopers) {
        return -1;
    }
    *st = next;
    st->have = 1;
    return 0;
}

/* Drains the queue of our type; 1 when a new message was taken. */
static int poll_queue(int msqid, long mtype, struct state *st, struct msg *m)
{
    int got = 0;
    uint32_t flags = 0;
    ssize_t n, last = -1;
    static struct msg keep;
    while ((n = msgrcv(msqid, m, BODY_MAX, mtype, IPC_NOWAIT)) >= 0) {
        got = 1;
        if (n >= 4) flags |= rd32(m->body);
        memcpy(&keep, m, sizeof(long) + (size_t)n);
        last = n;
    }
    if (!got) {
        return 0;
    }
    if (parse(keep.body, (size_t)last, st) != 0) {
        fprintf(stderr, "a message of type %ld does not parse\n", mtype);
        return 0;
    }
    st->flags = flags;
    st->messages++;
    return 1;
}

static void report(const char *name, const struct state *st)
{
    printf("|legacy_ipc_probe|%s|%u|%u|%u|%u|%u|%u|%u|%lu|%d|%s|\n", name, st->params.period,
           st->params.sample_period, st->range, st->snoopers, st->first_pid, st->containers,
           st->flags, st->messages, (int)getpid(),
           st->params.target_dev[0] != '\0' ? st->params.target_dev : "none");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s <msg type> <name>\n", argv[0]);
        return 2;
    }
    long mtype = strtol(argv[1], NULL, 10);
    const char *name = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);

    key_t key = ftok("/usr/bin/gala-gopher", 'g');
    int msqid = key == -1 ? -1 : msgget(key, 0);
    if (msqid < 0) {
        fprintf(stderr, "no message queue for /usr/bin/gala-gopher: %s\n", strerror(errno));
        return 255;
    }
    static struct msg m;
    struct state st;
    memset(&st, 0, sizeof(st));
    if (!poll_queue(msqid, mtype, &st, &m)) {
        fprintf(stderr, "no message of type %ld was queued before the start\n", mtype);
        return 3;
    }
    report(name, &st);
    time_t last = time(NULL);
    for (;;) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (poll_queue(msqid, mtype, &st, &m)) {
            report(name, &st);
            last = time(NULL);
        } else if (time(NULL) - last >= (time_t)(st.params.period ? st.params.period : 5)) {
            report(name, &st);
            last = time(NULL);
        }
    }
}
