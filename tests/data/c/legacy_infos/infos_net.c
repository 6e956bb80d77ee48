/* The net part: addresses formatted by ip_str, a command run by exec_cmd. */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "nprobe_fprintf.h"
#include "legacy_infos.h"

int infos_net_probe(void)
{
    unsigned char v4[IP_LEN] = {10, 1, 2, 3};
    unsigned char v6[IP6_LEN] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x1b, 0x21, 0xff, 192, 168, 0, 7};
    unsigned char mapped[IP6_LEN] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 172, 16, 5, 4};
    unsigned char text[IP6_STR_LEN];
    char line[LINE_BUF_LEN];
    char copy[INFOS_BUF_LEN];

    ip_str(AF_INET, v4, text, IP_STR_LEN);
    (void)nprobe_fprintf(stdout, "|%s|ip4|%s|4|\n", METRICS_INFOS_NAME, (char *)text);
    ip_str(AF_INET6, v6, text, IP6_STR_LEN);
    (void)nprobe_fprintf(stdout, "|%s|ip6|%s|6|\n", METRICS_INFOS_NAME, (char *)text);
    ip_str(AF_INET6, mapped, text, IP6_STR_LEN);
    (void)nprobe_fprintf(stdout, "|%s|ip6mapped|%s|46|\n", METRICS_INFOS_NAME, (char *)text);

    line[0] = 0;
    if (exec_cmd("echo 42; echo second", line, LINE_BUF_LEN) != 0) {
        return -1;
    }
    (void)nprobe_fprintf(stdout, "|%s|exec|first_line|%s|\n", METRICS_INFOS_NAME, line);

    (void)snprintf(copy, sizeof(copy), "%s\n", "trimmed");
    split_newline_symbol(copy);
    SPLIT_NEWLINE_SYMBOL(copy);
    (void)nprobe_fprintf(stdout, "|%s|split|%s|%zu|\n", METRICS_INFOS_NAME, copy, strlen(copy));
    return 0;
}
