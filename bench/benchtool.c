/* Traffic generators for bench/bench_daemon.py, compiled there with gcc.
 * Bench tooling only: pyfw itself has no C.  A Python sender tops out far
 * below what the kernel forwards, so the senders are here.
 *
 *   udp DST PORT SECONDS SIZE PROCS PPS UDP stream (sendmmsg; PPS 0: as fast as it goes), prints packets sent
 *   bulk DST PORT SECONDS               one TCP flow, prints bytes written and seconds
 *   sink PORT                           accepts one TCP flow, prints bytes read at EOF
 *   conns DST PORT SECONDS PROCS        short TCP connections, prints how many completed
 *   acceptor PORT                       answers each connection with one byte and closes
 *   flows SRC DST PORT0 COUNT PPS       COUNT distinct UDP flows, paced, prints sent
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct sockaddr_in addr(const char *ip, int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

/* children add their counts here */
static long *shared_counter(void) {
    long *c = mmap(NULL, sizeof(long) * 64, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (c == MAP_FAILED) { perror("mmap"); exit(1); }
    memset(c, 0, sizeof(long) * 64);
    return c;
}

static void wait_children(int n) {
    for (int i = 0; i < n; i++) wait(NULL);
}

static int udp(const char *dst, int port, double secs, int size, int procs, double pps) {
    long *sent = shared_counter();
    for (int p = 0; p < procs; p++) {
        if (fork() == 0) {
            int s = socket(AF_INET, SOCK_DGRAM, 0);
            struct sockaddr_in a = addr(dst, port);
            int buf = 4 << 20;
            setsockopt(s, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
            if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); _exit(1); }
            enum { B = 64 };
            char payload[2048];
            memset(payload, 'x', sizeof payload);
            struct mmsghdr msgs[B];
            struct iovec iov[B];
            memset(msgs, 0, sizeof msgs);
            for (int i = 0; i < B; i++) {
                iov[i].iov_base = payload;
                iov[i].iov_len = size;
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            long n = 0;
            double start = now(), end = start + secs;
            int batch = pps > 0 && pps < 20000 ? 1 : B;  /* slow rates: one packet at a time */
            while (now() < end) {
                if (pps > 0) {
                    double ahead = start + n / (pps / procs) - now();
                    if (ahead > 0) { usleep((useconds_t)(ahead * 1e6)); continue; }
                }
                int r = sendmmsg(s, msgs, batch, 0);
                if (r > 0) n += r;
                else if (r < 0 && errno != ECONNREFUSED && errno != ENOBUFS && errno != EAGAIN) { perror("sendmmsg"); break; }
            }
            sent[p] = n;
            _exit(0);
        }
    }
    wait_children(procs);
    long total = 0;
    for (int p = 0; p < procs; p++) total += sent[p];
    printf("%ld\n", total);
    return 0;
}

static int bulk(const char *dst, int port, double secs) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = addr(dst, port);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 1; }
    static char buf[65536];
    memset(buf, 'y', sizeof buf);
    long n = 0;
    double start = now(), end = start + secs;
    while (now() < end) {
        ssize_t r = write(s, buf, sizeof buf);
        if (r <= 0) { perror("write"); break; }
        n += r;
    }
    shutdown(s, SHUT_WR);
    char c;
    while (read(s, &c, 1) > 0) {}  /* the sink closes after reading everything */
    printf("%ld %.6f\n", n, now() - start);
    return 0;
}

static int listener(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = addr("0.0.0.0", port);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 4096) < 0) { perror("bind/listen"); exit(1); }
    printf("ready\n");
    fflush(stdout);
    return s;
}

static int sink(int port) {
    int s = listener(port);
    int c = accept(s, NULL, NULL);
    static char buf[1 << 20];
    long n = 0;
    ssize_t r;
    while ((r = read(c, buf, sizeof buf)) > 0) n += r;
    printf("%ld\n", n);
    fflush(stdout);
    close(c);
    return 0;
}

static int acceptor(int port) {
    int s = listener(port);
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        (void)!write(c, "k", 1);
        close(c);
    }
}

static int conns(const char *dst, int port, double secs, int procs) {
    long *done = shared_counter();
    for (int p = 0; p < procs; p++) {
        if (fork() == 0) {
            struct sockaddr_in a = addr(dst, port);
            struct linger lg = {1, 0};  /* close with a reset: no TIME_WAIT anywhere */
            struct timeval tv = {1, 0};
            long n = 0;
            double end = now() + secs;
            while (now() < end) {
                int s = socket(AF_INET, SOCK_STREAM, 0);
                setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
                char c;
                if (connect(s, (struct sockaddr *)&a, sizeof a) == 0 && read(s, &c, 1) == 1) n++;
                setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                close(s);
            }
            done[p] = n;
            _exit(0);
        }
    }
    wait_children(procs);
    long total = 0;
    for (int p = 0; p < procs; p++) total += done[p];
    printf("%ld\n", total);
    return 0;
}

/* COUNT flows from SRC to DST, flow i from source port 1024 + i % 64000 to
 * PORT0 + i / 64000: a raw socket writes the headers, so every flow has its
 * own source port as from many clients (the UDP checksum is left 0). */
static int flows(const char *src, const char *dst, int port0, long count, double pps) {
    int s = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    if (s < 0) { perror("socket"); return 1; }
    int buf = 4 << 20;
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    struct sockaddr_in a = addr(dst, 0);
    unsigned char pkt[29];
    memset(pkt, 0, sizeof pkt);
    pkt[0] = 0x45; pkt[8] = 64; pkt[9] = IPPROTO_UDP;
    pkt[3] = sizeof pkt;
    inet_pton(AF_INET, src, pkt + 12);
    inet_pton(AF_INET, dst, pkt + 16);
    pkt[25] = 9; pkt[28] = 'f';  /* UDP length 9, one byte of payload */
    long n = 0;
    double start = now();
    for (long i = 0; i < count; i++) {
        int sport = 1024 + (int)(i % 64000), dport = port0 + (int)(i / 64000);
        pkt[4] = (i >> 8) & 0xff; pkt[5] = i & 0xff;  /* an IP id of its own */
        pkt[20] = sport >> 8; pkt[21] = sport & 0xff;
        pkt[22] = dport >> 8; pkt[23] = dport & 0xff;
        while (sendto(s, pkt, sizeof pkt, 0, (struct sockaddr *)&a, sizeof a) < 0 && errno == ENOBUFS) {}
        n++;
        if ((i & 63) == 63) {
            double ahead = start + (i + 1) / pps - now();
            if (ahead > 0) usleep((useconds_t)(ahead * 1e6));
        }
    }
    printf("%ld\n", n);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 8 && !strcmp(argv[1], "udp"))
        return udp(argv[2], atoi(argv[3]), atof(argv[4]), atoi(argv[5]), atoi(argv[6]), atof(argv[7]));
    if (argc == 5 && !strcmp(argv[1], "bulk")) return bulk(argv[2], atoi(argv[3]), atof(argv[4]));
    if (argc == 3 && !strcmp(argv[1], "sink")) return sink(atoi(argv[2]));
    if (argc == 6 && !strcmp(argv[1], "conns")) return conns(argv[2], atoi(argv[3]), atof(argv[4]), atoi(argv[5]));
    if (argc == 3 && !strcmp(argv[1], "acceptor")) return acceptor(atoi(argv[2]));
    if (argc == 7 && !strcmp(argv[1], "flows")) return flows(argv[2], argv[3], atoi(argv[4]), atol(argv[5]), atof(argv[6]));
    fprintf(stderr, "usage: see the comment at the top of benchtool.c\n");
    return 2;
}
