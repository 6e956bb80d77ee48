/*
 * system_net: network interface counters from /proc/net/dev
 * (meta/system_net.meta). One record per interface, key "dev"; the 16
 * counters in the kernel's column order, receive then transmit.
 * SPDX-License-Identifier: MulanPSL-2.0
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gopher.h"
#include "probes.h"
#include "proc_util.h"

#define TABLE "system_net"
#define LINE_MAX_LEN 512 /* a /proc/net/dev line is < 200 bytes */
#define VALUE_LEN 24
#define DEV_LEN 64 /* IFNAMSIZ is 16; leave room, refuse anything longer */

enum net_field {
    N_DEV,
    N_RX_BYTES,
    N_RX_PACKETS,
    N_RX_ERRS,
    N_RX_DROP,
    N_RX_FIFO,
    N_RX_FRAME,
    N_RX_COMPRESSED,
    N_RX_MULTICAST,
    N_TX_BYTES,
    N_TX_PACKETS,
    N_TX_ERRS,
    N_TX_DROP,
    N_TX_FIFO,
    N_TX_COLLS,
    N_TX_CARRIER,
    N_TX_COMPRESSED,
    N_COUNT
};

/* Record order = meta order (checked by the crate's tests). */
static const char *const net_fields[N_COUNT + 1] = {
    [N_DEV] = "dev",
    [N_RX_BYTES] = "rx_bytes",
    [N_RX_PACKETS] = "rx_packets",
    [N_RX_ERRS] = "rx_errs",
    [N_RX_DROP] = "rx_drop",
    [N_RX_FIFO] = "rx_fifo",
    [N_RX_FRAME] = "rx_frame",
    [N_RX_COMPRESSED] = "rx_compressed",
    [N_RX_MULTICAST] = "rx_multicast",
    [N_TX_BYTES] = "tx_bytes",
    [N_TX_PACKETS] = "tx_packets",
    [N_TX_ERRS] = "tx_errs",
    [N_TX_DROP] = "tx_drop",
    [N_TX_FIFO] = "tx_fifo",
    [N_TX_COLLS] = "tx_colls",
    [N_TX_CARRIER] = "tx_carrier",
    [N_TX_COMPRESSED] = "tx_compressed",
    [N_COUNT] = NULL,
};

const char *const *gopher_probe_system_net_fields(void)
{
    return net_fields;
}

/* Parses "<spaces><dev>: <16 numbers>" into values; returns 0, or -1 for
 * a header line or a line without a usable interface name. */
static int parse_dev_line(char *line, char values[N_COUNT][DEV_LEN])
{
    /* The name cannot contain ':' but the numbers may follow it directly. */
    char *colon = strrchr(line, ':');
    char *name = line;
    char *cursor;
    size_t len;

    if (colon == NULL) {
        return -1;
    }
    *colon = '\0';
    while (*name == ' ' || *name == '\t') {
        name++;
    }
    len = strlen(name);
    if (len == 0 || len >= DEV_LEN || strpbrk(name, " \t") != NULL) {
        return -1;
    }
    memset(values, 0, sizeof(char[N_COUNT][DEV_LEN]));
    memcpy(values[N_DEV], name, len + 1);
    cursor = colon + 1;
    for (int f = N_RX_BYTES; f < N_COUNT; f++) {
        char *tok = next_token(&cursor);
        if (tok == NULL) {
            break; /* missing columns stay null */
        }
        (void)copy_number(values[f], VALUE_LEN, tok);
    }
    return 0;
}

static int collect(void)
{
    char path[PROC_PATH_MAX];
    char line[LINE_MAX_LEN];
    char values[N_COUNT][DEV_LEN];
    const char *ptrs[N_COUNT];
    int rc = 0;
    FILE *f;

    if (proc_path(path, sizeof path, "net/dev") != 0) {
        (void)gopher_log(GOPHER_LOG_ERROR, "system_net: proc root path too long");
        return -1;
    }
    f = fopen(path, "r");
    if (f == NULL) {
        log_errno(GOPHER_LOG_ERROR, "system_net: cannot open", path, errno);
        return -1;
    }
    for (;;) {
        gopher_status st;
        int r = next_line(f, line, sizeof line);

        if (r == LINE_EOF) {
            break;
        }
        if (r == LINE_ERROR) {
            log_errno(GOPHER_LOG_ERROR, "system_net: cannot read", path, errno);
            rc = -1;
            break;
        }
        if (r == LINE_TOO_LONG || parse_dev_line(line, values) != 0) {
            continue;
        }
        for (int i = 0; i < N_COUNT; i++) {
            ptrs[i] = values[i][0] != '\0' ? values[i] : NULL;
        }
        st = gopher_record_emit(TABLE, ptrs, N_COUNT);
        if (st == GOPHER_ERR_IO) {
            rc = -1; /* stdout is gone: the daemon closed the pipe */
            break;
        }
        if (st != GOPHER_OK) {
            /* e.g. an interface name with '|', which Linux allows. */
            char msg[DEV_LEN + 96];
            (void)snprintf(msg, sizeof msg, "system_net: interface skipped: %s",
                           gopher_status_str(st));
            (void)gopher_log(GOPHER_LOG_DEBUG, msg);
        }
    }
    if (fclose(f) != 0 && rc == 0) {
        log_errno(GOPHER_LOG_WARN, "system_net: close", path, errno);
    }
    return rc;
}

static int system_net_entry(const struct probe_params *params)
{
    (void)params;
    return collect();
}

const struct gopher_probe_desc gopher_probe_system_net = {
    GOPHER_ABI_VERSION,
    "system_net",
    system_net_entry,
    5,
};
