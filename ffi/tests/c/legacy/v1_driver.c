/* Calls the renamed V1 entry twice, as the probe host does every period. */
#include "args.h"
#include "check.h"

int probe_main_v1_demo(struct probe_params *params);

int main(void)
{
    struct probe_params p;

    CHECK_STATUS(gopher_params_get(&p), GOPHER_OK);
    CHECK(probe_main_v1_demo(&p) == 0);
    CHECK(probe_main_v1_demo(&p) == 0);
    return 0;
}
