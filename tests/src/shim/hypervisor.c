/*
 * hypervisor.c: an LD_PRELOAD stand-in for the hypervisor, so that Debian's
 * real C xenstored (xen-utils-4.17) runs on a machine without Xen.
 *
 * xenstored reaches the hypervisor only through libxenctrl, libxengnttab,
 * libxenevtchn and two files under /proc/xen. Everything else (the tree,
 * permissions, quotas, watches, transactions, the socket server) is the real
 * daemon's code. Here:
 *
 *   - every domain id below DOMID_FIRST_RESERVED exists and is running;
 *   - "mapping a grant" of domain D maps the file $XSFAKE_DIR/ring-D: one
 *     page holding struct xenstore_domain_interface, shared with the test
 *     harness's ring bridge;
 *   - the event channel to xenstored is the FIFO $XSFAKE_DIR/evtchn: any
 *     byte written there makes xenstored look at every ring;
 *   - xenstored notifying domain D writes a byte to the FIFO
 *     $XSFAKE_DIR/notify-D, when someone has it open;
 *   - /proc/xen/xsd_kva is ring-0 (dom0's, unused) and /proc/xen/xsd_port
 *     holds "1".
 *
 * Port numbers: the VIRQ port is 1, domain D's port is D + 16.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    PAGE_BYTES = 4096,
    FIRST_RESERVED_DOMID = 0x7ff0,
    VIRQ_PORT = 1,
    DOMAIN_PORT_OFFSET = 16,
};

/* --------------------------------------------------------------- files */

static const char *state_dir(void)
{
    const char *dir = getenv("XSFAKE_DIR");
    return dir && *dir ? dir : "/tmp/xsfake";
}

static void state_file(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", state_dir(), name);
}

typedef int (*open_function)(const char *, int, ...);

/* The libc open(), bypassing our own interposer. */
static int libc_open(const char *path, int flags, mode_t mode)
{
    static open_function next_open;
    if (!next_open)
        next_open = (open_function)dlsym(RTLD_NEXT, "open");
    return next_open(path, flags, mode);
}

/* The ring page of a domain, created one page long if missing. */
static int open_ring(unsigned int domid)
{
    char name[32], path[4096];
    struct stat st;
    int fd;

    mkdir(state_dir(), 0700);
    snprintf(name, sizeof(name), "ring-%u", domid);
    state_file(path, sizeof(path), name);
    fd = libc_open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) == 0 && st.st_size < PAGE_BYTES && ftruncate(fd, PAGE_BYTES) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int open_port_file(void)
{
    char path[4096];
    int fd;

    mkdir(state_dir(), 0700);
    state_file(path, sizeof(path), "xsd_port");
    fd = libc_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (write(fd, "1", 1) != 1) {
            /* the read below then finds an empty file and fails loudly */
        }
        close(fd);
    }
    return libc_open(path, O_RDONLY | O_CLOEXEC, 0);
}

static int open_or_redirect(const char *path, int flags, mode_t mode)
{
    if (path && strcmp(path, "/proc/xen/xsd_kva") == 0)
        return open_ring(0);
    if (path && strcmp(path, "/proc/xen/xsd_port") == 0)
        return open_port_file();
    return libc_open(path, flags, mode);
}

static mode_t mode_argument(int flags, va_list args)
{
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(args, int) : 0;
}

int open(const char *path, int flags, ...)
{
    va_list args;
    mode_t mode;
    va_start(args, flags);
    mode = mode_argument(flags, args);
    va_end(args);
    return open_or_redirect(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    va_list args;
    mode_t mode;
    va_start(args, flags);
    mode = mode_argument(flags, args);
    va_end(args);
    return open_or_redirect(path, flags, mode);
}

/* ---------------------------------------------------------- libxenctrl */

static char control_handle;

void *xc_interface_open(void *logger, void *dombuild_logger, unsigned flags)
{
    (void)logger;
    (void)dombuild_logger;
    (void)flags;
    return &control_handle;
}

int xc_interface_close(void *handle)
{
    (void)handle;
    return 0;
}

/* The head of Xen 4.17's xc_dominfo_t: all xenstored reads. */
struct dominfo_head {
    uint32_t domid;
    uint32_t ssidref;
    unsigned int dying : 1, crashed : 1, shutdown : 1, paused : 1, blocked : 1,
        running : 1, hvm : 1, debugged : 1, xenstore : 1, hap : 1;
    unsigned int shutdown_reason;
};

int xc_domain_getinfo(void *handle, uint32_t first_domid, unsigned int max_doms, void *info)
{
    struct dominfo_head *head = info;
    (void)handle;
    if (max_doms == 0 || first_domid >= FIRST_RESERVED_DOMID)
        return 0;
    memset(head, 0, sizeof(*head));
    head->domid = first_domid;
    head->running = 1;
    return 1;
}

/* -------------------------------------------------------- libxengnttab */

static char grant_handle;

void *xengnttab_open(void *logger, unsigned flags)
{
    (void)logger;
    (void)flags;
    return &grant_handle;
}

int xengnttab_close(void *handle)
{
    (void)handle;
    return 0;
}

int xengnttab_set_max_grants(void *handle, uint32_t count)
{
    (void)handle;
    (void)count;
    return 0;
}

void *xengnttab_map_grant_ref(void *handle, uint32_t domid, uint32_t ref, int prot)
{
    void *page;
    int fd = open_ring(domid);
    (void)handle;
    (void)ref;
    if (fd < 0)
        return NULL;
    page = mmap(NULL, PAGE_BYTES, prot ? prot : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    return page == MAP_FAILED ? NULL : page;
}

int xengnttab_unmap(void *handle, void *start, uint32_t count)
{
    (void)handle;
    return munmap(start, (size_t)count * PAGE_BYTES);
}

/* -------------------------------------------------------- libxenevtchn */

struct event_channel {
    /* The kick FIFO, opened read-write so that it never reads as EOF. */
    int fifo;
};

static struct event_channel *open_event_channel(void)
{
    char path[4096];
    struct event_channel *channel;

    mkdir(state_dir(), 0700);
    state_file(path, sizeof(path), "evtchn");
    if (mkfifo(path, 0600) != 0 && errno != EEXIST)
        return NULL;
    channel = calloc(1, sizeof(*channel));
    if (!channel)
        return NULL;
    channel->fifo = libc_open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
    if (channel->fifo < 0) {
        free(channel);
        return NULL;
    }
    return channel;
}

void *xenevtchn_open(void *logger, unsigned flags)
{
    (void)logger;
    (void)flags;
    return open_event_channel();
}

void *xenevtchn_fdopen(void *logger, int fd, unsigned flags)
{
    (void)logger;
    (void)fd;
    (void)flags;
    return open_event_channel();
}

int xenevtchn_close(void *handle)
{
    struct event_channel *channel = handle;
    if (channel) {
        close(channel->fifo);
        free(channel);
    }
    return 0;
}

int xenevtchn_fd(void *handle)
{
    return ((struct event_channel *)handle)->fifo;
}

int xenevtchn_bind_virq(void *handle, unsigned int virq)
{
    (void)handle;
    (void)virq;
    return VIRQ_PORT;
}

int xenevtchn_bind_interdomain(void *handle, uint32_t domid, uint32_t remote_port)
{
    (void)handle;
    (void)remote_port;
    return (int)(domid + DOMAIN_PORT_OFFSET);
}

int xenevtchn_unbind(void *handle, uint32_t port)
{
    (void)handle;
    (void)port;
    return 0;
}

/*
 * Swallow the kicks and name a port that belongs to no domain and is not
 * the VIRQ: xenstored then checks every ring for work.
 */
int xenevtchn_pending(void *handle)
{
    char sink[256];
    while (read(((struct event_channel *)handle)->fifo, sink, sizeof(sink)) > 0) {
    }
    return DOMAIN_PORT_OFFSET - 1;
}

int xenevtchn_unmask(void *handle, uint32_t port)
{
    (void)handle;
    (void)port;
    return 0;
}

int xenevtchn_notify(void *handle, uint32_t port)
{
    char name[32], path[4096];
    int fd;
    (void)handle;
    if (port < DOMAIN_PORT_OFFSET)
        return 0;
    snprintf(name, sizeof(name), "notify-%u", port - DOMAIN_PORT_OFFSET);
    state_file(path, sizeof(path), name);
    /* Non-blocking: fails when nobody listens, which is fine. */
    fd = libc_open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    if (write(fd, "!", 1) != 1) {
        /* a full FIFO means the listener has wake-ups pending already */
    }
    close(fd);
    return 0;
}
