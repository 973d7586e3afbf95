/* The C reference for bench/receive.py: what a minimal receiver costs.
 *
 * A TPACKET_V3 ring (SOCK_DGRAM, 16 x 1 MiB blocks, like vmsniff's), a kernel filter compiled
 * by libpcap ("ip proto 47"), and per packet: IPv4 + GRE header length, then a pcap record of
 * the inner frame through stdio. No options, no fragments, no ERSPAN: a floor to compare
 * against, not a tool. Stops on SIGTERM/SIGINT and flushes.
 *
 *   cc -O2 -o c_receiver c_receiver.c -lpcap && c_receiver IFACE OUT.pcap
 */
#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s IFACE OUT.pcap\n", argv[0]); return 2; }
    int fd = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_ALL));
    if (fd < 0) { perror("socket"); return 1; }
    pcap_t *dead = pcap_open_dead(DLT_RAW, 262144);
    struct bpf_program prog;
    if (pcap_compile(dead, &prog, "ip proto 47", 1, PCAP_NETMASK_UNKNOWN) < 0) return 1;
    struct sock_fprog fprog = {.len = prog.bf_len, .filter = (struct sock_filter *)prog.bf_insns};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) < 0) { perror("filter"); return 1; }
    int v = TPACKET_V3;
    setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v);
    struct tpacket_req3 req = {.tp_block_size = 1 << 20, .tp_block_nr = 16, .tp_frame_size = 2048,
                               .tp_frame_nr = (1 << 20) / 2048 * 16, .tp_retire_blk_tov = 50};
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) { perror("ring"); return 1; }
    uint8_t *ring = mmap(NULL, (size_t)req.tp_block_size * req.tp_block_nr, PROT_READ | PROT_WRITE,
                         MAP_SHARED, fd, 0);
    if (ring == MAP_FAILED) { perror("mmap"); return 1; }
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
                             .sll_ifindex = (int)if_nametoindex(argv[1])};
    if (bind(fd, (struct sockaddr *)&ll, sizeof ll) < 0) { perror("bind"); return 1; }
    FILE *out = fopen(argv[2], "wb");
    if (!out) { perror(argv[2]); return 1; }
    static char buf[1 << 18];
    setvbuf(out, buf, _IOFBF, sizeof buf);
    uint32_t fh[6] = {0xA1B23C4D, 2 | 4 << 16, 0, 0, 262144, 1};
    fwrite(fh, sizeof fh, 1, out);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    unsigned next = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLERR};
    while (!stop) {
        struct tpacket_block_desc *bd = (void *)(ring + (size_t)next * req.tp_block_size);
        if (!(bd->hdr.bh1.block_status & TP_STATUS_USER)) { poll(&pfd, 1, 100); continue; }
        uint8_t *p = (uint8_t *)bd + bd->hdr.bh1.offset_to_first_pkt;
        for (uint32_t i = 0; i < bd->hdr.bh1.num_pkts; i++) {
            struct tpacket3_hdr *h = (void *)p;
            const uint8_t *ip = p + h->tp_mac;
            const struct sockaddr_ll *sll = (void *)(p + TPACKET_ALIGN(sizeof *h));
            if (sll->sll_pkttype != PACKET_OUTGOING && h->tp_snaplen >= 24 && ip[0] == 0x45) {
                uint16_t flags = (uint16_t)(ip[20] << 8 | ip[21]);
                uint32_t outer = 24 + 4 * (!!(flags & 0x8000) + !!(flags & 0x2000) + !!(flags & 0x1000));
                if (h->tp_snaplen >= outer) {
                    uint32_t cap = h->tp_snaplen - outer;
                    uint32_t claimed = (uint32_t)(ip[2] << 8 | ip[3]);
                    uint32_t orig = claimed > outer ? claimed - outer : cap;
                    uint32_t rec[4] = {h->tp_sec, h->tp_nsec, cap, orig > cap ? orig : cap};
                    fwrite(rec, sizeof rec, 1, out);
                    fwrite(ip + outer, cap, 1, out);
                }
            }
            p += h->tp_next_offset;
        }
        bd->hdr.bh1.block_status = TP_STATUS_KERNEL;
        next = (next + 1) % req.tp_block_nr;
    }
    fclose(out);
    return 0;
}
