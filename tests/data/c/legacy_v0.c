/*
 * A V0-style legacy probe: plain fprintf(stdout) and a main that loops
 * forever, built unchanged with -Dmain=probe_main_legacy_v0.
 */
#include <stdio.h>
#include <unistd.h>

int main()
{
    unsigned long n = 0;
    for (;;) {
        n++;
        fprintf(stdout, "|demo_app|2000|v0|%lu|1|\n", n);
        sleep(1);
    }
    return 0;
}
