/* A minimal host: dlopen an out-of-tree probe, check its descriptor, run
 * its entry once. The host has its own copy of libgopher (static); the
 * probe uses libgopher.so: both write to the same stdout. */
#include <dlfcn.h>

#include "args.h"
#include "check.h"

int main(int argc, char **argv)
{
    void *lib;
    const struct gopher_probe_desc *desc;
    struct probe_params params;

    CHECK(argc == 2);
    lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    desc = (const struct gopher_probe_desc *)dlsym(lib, "gopher_probe_descriptor");
    CHECK(desc != NULL);
    CHECK_STATUS(gopher_probe_desc_check(desc), GOPHER_OK);
    CHECK_STATUS(gopher_params_get(&params), GOPHER_OK);
    CHECK(desc->entry(&params) == 0);
    CHECK_STATUS(gopher_record_emit_line("|host|done|"), GOPHER_OK);
    CHECK(dlclose(lib) == 0);
    return 0;
}
