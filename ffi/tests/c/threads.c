/* Records of concurrent threads never interleave. */
#include <pthread.h>
#include <stdint.h>

#include "check.h"
#include "nprobe_fprintf.h"

#define THREADS 4
#define PER_THREAD 500

static void *worker(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    char tid[16];
    char seq[16];
    const char *values[3] = {tid, seq, "0123456789abcdefghijklmnopqrstuvwxyz"};

    (void)snprintf(tid, sizeof tid, "t%u", id);
    for (unsigned i = 0; i < PER_THREAD; i++) {
        (void)snprintf(seq, sizeof seq, "%u", i);
        if (i % 2 == 0) {
            CHECK_STATUS(gopher_record_emit("threads", values, 3), GOPHER_OK);
        } else {
            CHECK(nprobe_fprintf(stdout, "|threads|%s|%s|%s|\n", tid, seq, values[2]) > 0);
        }
    }
    return NULL;
}

int main(void)
{
    pthread_t th[THREADS];

    for (unsigned i = 0; i < THREADS; i++) {
        CHECK(pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i) == 0);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
    }
    return 0;
}
