/* LD_PRELOAD shim for the Janus comparison in bench/capacity.py.
 *
 * Janus (and libnice under it) skips interfaces flagged IFF_LOOPBACK when it gathers ICE
 * host candidates, so on a loopback-only machine (the tests' network namespace) it offers
 * none and no peer connection can be set up. This shim hands Janus the real getifaddrs()
 * list with the loopback flag cleared; janus.jcfg's ice_enforce_list = "127.0.0.1" then
 * keeps only 127.0.0.1. Nothing else in the process changes: media goes over lo as usual.
 *
 * Built by the bench at run time: cc -shared -fPIC -o shim.so loopback_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stddef.h>

int getifaddrs(struct ifaddrs **ifap) {
    static int (*real)(struct ifaddrs **) = NULL;
    if (real == NULL)
        real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    if (real == NULL)
        return -1;
    int rc = real(ifap);
    if (rc == 0) {
        for (struct ifaddrs *ifa = *ifap; ifa != NULL; ifa = ifa->ifa_next)
            ifa->ifa_flags &= ~(unsigned int)IFF_LOOPBACK;
    }
    return rc;
}
