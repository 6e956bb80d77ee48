/*
 * A stand-in for a legacy 1.x eBPF probe binary, run by the agent as an
 * extend probe (tests/integration/legacy_bin.rs). Like the real ones it:
 * creates an eBPF map with the bpf(2) syscall, pins it under
 * /sys/fs/bpf/probe/<name>, reads the application whitelist given with
 * `-w <path>` (the libconfig gala-gopher-app.conf: one `comm = "...";` per
 * application), and prints one record every `-t <period>` seconds:
 *
 *   |legacy_bin_probe|<name>|<first comm>|<bpffs>|<map>|<pinned>|<pin errno>|<apps>|<pid>|
 *
 * bpffs is 1 when /sys/fs/bpf is a BPF filesystem, map 1 when the map was
 * created, pinned 1 when the pin exists at its path.
 *
 * Usage: pin_probe -n <name> -t <period> -w <whitelist>
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BPF_FS_MAGIC_NUMBER 0xcafe4a11

static long sys_bpf(int cmd, union bpf_attr *attr)
{
    return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

/* Counts the `comm` settings of the whitelist and keeps the first value. */
static int read_whitelist(const char *path, char *first, size_t first_len)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int apps = 0;

    first[0] = '\0';
    if (f == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *p = strstr(line, "comm");
        char *q;
        if (p == NULL || (q = strchr(p, '"')) == NULL) {
            continue;
        }
        apps++;
        if (apps == 1) {
            char *end = strchr(q + 1, '"');
            size_t n = end != NULL ? (size_t)(end - q - 1) : 0;
            if (n >= first_len) {
                n = first_len - 1;
            }
            memcpy(first, q + 1, n);
            first[n] = '\0';
        }
    }
    fclose(f);
    return apps;
}

int main(int argc, char **argv)
{
    const char *name = "pin";
    const char *whitelist = NULL;
    int period = 5;
    int opt;

    while ((opt = getopt(argc, argv, "n:t:w:")) != -1) {
        switch (opt) {
        case 'n': name = optarg; break;
        case 't': period = atoi(optarg); break;
        case 'w': whitelist = optarg; break;
        default:
            fprintf(stderr, "usage: %s -n name -t period -w whitelist\n", argv[0]);
            return 2;
        }
    }
    if (period <= 0) {
        period = 5;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    struct statfs sf;
    int bpffs = statfs("/sys/fs/bpf", &sf) == 0 && (unsigned long)sf.f_type == BPF_FS_MAGIC_NUMBER;

    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 8;
    attr.max_entries = 1;
    int map_fd = (int)sys_bpf(BPF_MAP_CREATE, &attr);
    if (map_fd < 0) {
        fprintf(stderr, "BPF_MAP_CREATE: %s\n", strerror(errno));
    }

    char pin_path[256];
    snprintf(pin_path, sizeof(pin_path), "/sys/fs/bpf/probe/%s", name);
    int pin_errno = 0;
    if (map_fd >= 0) {
        (void)mkdir("/sys/fs/bpf/probe", 0700);
        (void)unlink(pin_path);
        memset(&attr, 0, sizeof(attr));
        attr.pathname = (unsigned long)pin_path;
        attr.bpf_fd = (unsigned int)map_fd;
        if (sys_bpf(BPF_OBJ_PIN, &attr) != 0) {
            pin_errno = errno;
            fprintf(stderr, "BPF_OBJ_PIN %s: %s\n", pin_path, strerror(errno));
        }
    } else {
        pin_errno = errno;
    }

    for (;;) {
        char comm[64];
        int apps = whitelist != NULL ? read_whitelist(whitelist, comm, sizeof(comm)) : -1;
        if (apps < 0) {
            snprintf(comm, sizeof(comm), "none");
        }
        struct stat st;
        int pinned = stat(pin_path, &st) == 0;
        printf("|legacy_bin_probe|%s|%s|%d|%d|%d|%d|%d|%d|\n", name, comm, bpffs, map_fd >= 0,
               pinned, pin_errno, apps, (int)getpid());
        sleep((unsigned int)period);
    }
}
