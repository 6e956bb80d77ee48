/* The system part: the time string, __snprintf and the probe parameters. */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "common.h"
#include "nprobe_fprintf.h"
#include "legacy_infos.h"

int infos_sys_probe(unsigned int period, const char *dev, u32 round)
{
    char buf[INFOS_BUF_LEN];
    char small[8];
    char *p = buf;
    char *q = small;
    int remain = 0;
    int small_remain = -1;
    int ret;
    char *now = get_cur_time();

    buf[0] = 0;
    ret = __snprintf(&p, INFOS_BUF_LEN, &remain, "%s-%u", "dev", period);
    if (ret == 0) {
        ret = __snprintf(&p, remain, &remain, "_%s", dev);
    }
    (void)nprobe_fprintf(stdout, "|%s|snprintf|%s|%d|\n", METRICS_INFOS_NAME, buf,
                         ret == 0 ? remain : -1);
    /* Too long for the buffer: -1, and the remaining size is untouched. */
    ret = __snprintf(&q, (int)sizeof(small), &small_remain, "%s", "far too long");
    (void)nprobe_fprintf(stdout, "|%s|snprintf_small|%d|%d|\n", METRICS_INFOS_NAME, ret,
                         small_remain);

    (void)nprobe_fprintf(stdout, "|%s|time|%s|%zu|\n", METRICS_INFOS_NAME, now, strlen(now));
    (void)nprobe_fprintf(stdout, "|%s|round|%s|%u|\n", METRICS_INFOS_NAME, dev, round);
    return 0;
}
