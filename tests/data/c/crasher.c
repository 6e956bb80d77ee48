/* A legacy probe that crashes on its first call. */
#include <signal.h>
#include "args.h"

int main(struct probe_params *params)
{
    (void)params;
    raise(SIGSEGV);
    return 0;
}
