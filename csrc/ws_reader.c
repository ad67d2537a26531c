/* Incremental frame reader (RFC 6455 sections 5.2-5.5, 7.4).
 *
 * One call runs a small state machine over the input: header (buffered in
 * hbuf when split), then payload (control frames into ctl, data frames
 * appended to buf while unmasking and validating UTF-8), and returns as soon
 * as one event is complete, so ev->data can point into our own buffers. */
#include <stdlib.h>
#include <string.h>

#include "ws_reader.h"

/* A delivered message's buffer above this size is freed on the next feed,
 * so idle connections stay small; smaller ones are kept for reuse. */
#define KEEP_MAX (64 * 1024)
/* First allocation for a message (unless the frame is smaller). */
#define BUF_MIN 256
/* How far past the bytes received a final frame's buffer may be reserved. */
#define RESERVE_AHEAD (1024 * 1024)
/* Unmask, then validate, this many bytes at a time: the validator reads
 * what the unmask just wrote while it is still in L1. */
#define CHUNK 8192

/* ev->data for an empty payload: never NULL, so callers can pass it on. */
static const unsigned char empty[1];

static int fail(ws_reader *r, unsigned code, const char *why)
{
    r->error_code = code;
    r->error = why;
    return WS_READ_ERROR;
}

static int nomem(ws_reader *r)
{
    r->error_code = 1011;
    r->error = "out of memory";
    return WS_READ_NOMEM;
}

void ws_reader_init(ws_reader *r, const ws_reader_opts *opts)
{
    memset(r, 0, sizeof *r);
    r->opts = *opts;
    r->in_header = 1;
    ws_utf8_init(&r->utf8);
}

void ws_reader_free(ws_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->buf_len = r->buf_cap = 0;
}

static int is_control(int op)
{
    return op >= WS_OP_CLOSE;
}

/* The message in progress needs UTF-8 checks: text, not compressed
 * (RSV1 means permessage-deflate; the inflated text is checked above us). */
static int check_text(const ws_reader *r)
{
    return r->msg_opcode == WS_OP_TEXT && !(r->msg_rsv & WS_RSV1);
}

/* The most wire bytes a message may take: max_message, but for a
 * compressed one (RSV1) what DEFLATE may expand max_message bytes of
 * incompressible data to. That is zlib's deflateBound() for unknown
 * parameters (zlib 1.2.12 on): fixed blocks of 9-bit literals at memLevel 2
 * (~13%), or stored blocks of 127 bytes at memLevel 1 (~4%), + 1 byte for
 * the sync flush's empty block less the 00 00 ff ff the sender strips. The
 * inflated size is held to max_message where it is inflated, so a bomb
 * gains nothing from this. */
static uint64_t wire_max(const ws_reader *r, int rsv)
{
    uint64_t m = r->opts.max_message, fixed, stored;

    if (!m || !(rsv & WS_RSV1))
        return m;
    fixed = m + (m >> 3) + (m >> 8) + (m >> 9) + 4;
    stored = m + (m >> 5) + (m >> 7) + (m >> 11) + 7;
    return (fixed > stored ? fixed : stored) + 1;
}

/* Rules of section 5 on a complete header; prepares the payload state. */
static int check_header(ws_reader *r)
{
    const ws_frame_header *h = &r->fh;
    int op = h->opcode;

    if ((op > WS_OP_BINARY && op < WS_OP_CLOSE) || op > WS_OP_PONG)
        return fail(r, 1002, "reserved opcode");
    if (r->opts.role == WS_ROLE_SERVER && !h->masked)
        return fail(r, 1002, "unmasked frame from client");
    if (r->opts.role != WS_ROLE_SERVER && h->masked)
        return fail(r, 1002, "masked frame from server");
    if (is_control(op)) {
        if (!h->fin)
            return fail(r, 1002, "fragmented control frame");
        if (h->length > WS_MAX_CONTROL)
            return fail(r, 1002, "control frame too long");
        if (h->rsv)
            return fail(r, 1002, "reserved bits set");
        r->ctl_len = 0;
    } else if (op == WS_OP_CONT) {
        if (!r->msg_opcode)
            return fail(r, 1002, "unexpected continuation frame");
        if (h->rsv)
            return fail(r, 1002, "reserved bits set");
    } else {
        if (r->msg_opcode)
            return fail(r, 1002, "expected continuation frame");
        if (h->rsv & ~r->opts.rsv_allowed)
            return fail(r, 1002, "reserved bits set");
    }
    if (!is_control(op)) {
        uint64_t max = wire_max(r, op == WS_OP_CONT ? r->msg_rsv : h->rsv);
        size_t have = op == WS_OP_CONT ? r->buf_len : 0;
        /* checked on the header, before a byte of it is stored;
         * have <= max holds here, so the subtraction cannot wrap */
        if (max && (h->length > max || have > max - h->length))
            return fail(r, 1009, "message too big");
        if (op != WS_OP_CONT) {
            r->msg_opcode = op;
            r->msg_rsv = h->rsv;
            r->buf_len = 0;
            ws_utf8_init(&r->utf8);
        }
    }
    r->remaining = h->length;
    r->mask_pos = 0;
    r->in_header = 0;
    return WS_READ_EVENT;
}

/* Collect header bytes from in[*pos..len). WS_READ_EVENT: header complete
 * and valid; WS_READ_NEED: input used up; else an error. */
static int read_header(ws_reader *r, const unsigned char *in, size_t len, size_t *pos)
{
    size_t need, n;
    int rc;

    if (r->hlen == 0) {
        if (*pos == len)
            return WS_READ_NEED;
        /* usual case: the whole header is in the input, parse it in place */
        rc = ws_frame_parse_header(in + *pos, len - *pos, &r->fh, &need);
        if (rc == WS_FRAME_OK) {
            *pos += r->fh.header_len;
            return check_header(r);
        }
        if (rc == WS_FRAME_BAD_LENGTH)
            return fail(r, 1002, "frame length too large");
        /* less than a whole header is left (so fewer than 14 bytes) */
        n = len - *pos;
        if (n > sizeof r->hbuf)
            n = sizeof r->hbuf;
        memcpy(r->hbuf, in + *pos, n);
        r->hlen = n;
        *pos += n;
        return WS_READ_NEED;
    }
    for (;;) {
        rc = ws_frame_parse_header(r->hbuf, r->hlen, &r->fh, &need);
        if (rc == WS_FRAME_OK)
            return check_header(r);
        if (rc == WS_FRAME_BAD_LENGTH)
            return fail(r, 1002, "frame length too large");
        if (*pos == len)
            return WS_READ_NEED;
        /* take only what the header needs: the payload stays in the input */
        n = len - *pos;
        if (n > need)
            n = need;
        if (n > sizeof r->hbuf - r->hlen)
            n = sizeof r->hbuf - r->hlen;
        memcpy(r->hbuf + r->hlen, in + *pos, n);
        r->hlen += n;
        *pos += n;
    }
}

/* Make room for need bytes in buf (need > buf_cap). Doubles, but never
 * past what the message can use: the end of the current frame when it is
 * the last one (the exact size is known), wire_max() otherwise. */
static int grow(ws_reader *r, size_t need)
{
    size_t cap, limit = SIZE_MAX;
    uint64_t max = wire_max(r, r->msg_rsv);
    unsigned char *p;

    if (r->fh.fin) {
        if (r->remaining < (uint64_t)(limit - r->buf_len))
            limit = r->buf_len + (size_t)r->remaining;
    } else if (max && max < (uint64_t)limit) {
        limit = (size_t)max;
    }
    cap = r->buf_cap < BUF_MIN / 2 ? BUF_MIN
        : r->buf_cap > limit / 2 ? limit : r->buf_cap * 2;
    /* A final frame's end is known: reserve up to it (at most RESERVE_AHEAD
     * past what arrived), so a large message read in pieces is not copied
     * by every doubling. A frame that only claims a size costs nothing more. */
    if (r->fh.fin && need < SIZE_MAX - RESERVE_AHEAD && cap < need + RESERVE_AHEAD)
        cap = need + RESERVE_AHEAD;
    if (cap > limit)
        cap = limit;
    if (cap < need)
        cap = need;
    p = (unsigned char *)realloc(r->buf, cap);
    if (p == NULL)
        return 0;
    r->buf = p;
    r->buf_cap = cap;
    return 1;
}

/* Append n payload bytes of a data frame: unmask while copying, then check
 * the new bytes of a text message so bad UTF-8 fails as soon as it arrives. */
static int append(ws_reader *r, const unsigned char *src, size_t n)
{
    int text = check_text(r);
    size_t k;

    if (n > r->buf_cap - r->buf_len) {
        if (n > SIZE_MAX - r->buf_len)
            return nomem(r);
        if (!grow(r, r->buf_len + n))
            return nomem(r);
    }
    while (n > 0) {
        unsigned char *dst = r->buf + r->buf_len;
        k = n < CHUNK ? n : CHUNK;
        if (r->fh.masked)
            r->mask_pos = ws_mask(dst, src, k, r->fh.key, r->mask_pos);
        else
            memcpy(dst, src, k);
        r->buf_len += k;
        if (text && ws_utf8_feed(&r->utf8, dst, k) != 0)
            return fail(r, 1007, "invalid utf-8");
        src += k;
        n -= k;
    }
    return WS_READ_EVENT;
}

static void message_event(ws_event *ev, int op, int rsv,
                          const unsigned char *data, size_t len)
{
    ev->opcode = op;
    ev->rsv = rsv;
    ev->data = data ? data : empty;
    ev->len = len;
    ev->close_code = 0;
    ev->reason = ev->data;
    ev->reason_len = 0;
}

/* A whole control frame is in ctl: check a close payload, fill the event. */
static int control_event(ws_reader *r, ws_event *ev)
{
    message_event(ev, r->fh.opcode, 0, r->ctl, r->ctl_len);
    if (r->fh.opcode != WS_OP_CLOSE)
        return WS_READ_EVENT;
    if (r->ctl_len == 0) {
        ev->close_code = 1005;   /* "no status received" (section 7.4.1) */
        return WS_READ_EVENT;
    }
    if (r->ctl_len == 1)
        return fail(r, 1002, "invalid close payload");
    ev->close_code = (unsigned)r->ctl[0] << 8 | r->ctl[1];
    if (!ws_close_code_valid(ev->close_code))
        return fail(r, 1002, "invalid close code");
    if (!ws_utf8_valid(r->ctl + 2, r->ctl_len - 2))
        return fail(r, 1007, "invalid utf-8");
    ev->reason = r->ctl + 2;
    ev->reason_len = r->ctl_len - 2;
    return WS_READ_EVENT;
}

/* The frame's payload is complete: the next bytes are a header. */
static void end_frame(ws_reader *r)
{
    r->in_header = 1;
    r->hlen = 0;
}

int ws_reader_feed(ws_reader *r, const unsigned char *buf, size_t len,
                   size_t *used, ws_event *ev)
{
    size_t pos = 0, n;
    int rc;

    *used = 0;
    if (r->error_code)
        return WS_READ_ERROR;
    if (!r->msg_opcode) {
        /* the last message's data (if any) is no longer promised to anyone */
        r->buf_len = 0;
        if (r->buf_cap > KEEP_MAX)
            ws_reader_free(r);
    }
    for (;;) {
        if (r->in_header) {
            rc = read_header(r, buf, len, &pos);
            if (rc != WS_READ_EVENT) {
                *used = pos;
                return rc;
            }
            /* an unmasked single-frame message already whole in the input
             * (the client side): deliver it in place, no copy */
            if (r->fh.opcode == WS_OP_TEXT || r->fh.opcode == WS_OP_BINARY) {
                if (r->fh.fin && !r->fh.masked && r->remaining <= len - pos) {
                    n = (size_t)r->remaining;
                    if (check_text(r) && !ws_utf8_valid(buf + pos, n)) {
                        *used = pos;
                        return fail(r, 1007, "invalid utf-8");
                    }
                    message_event(ev, r->msg_opcode, r->msg_rsv,
                                  n ? buf + pos : NULL, n);
                    r->msg_opcode = 0;
                    r->remaining = 0;
                    end_frame(r);
                    *used = pos + n;
                    return WS_READ_EVENT;
                }
            }
        }
        n = len - pos;
        if (n > r->remaining)
            n = (size_t)r->remaining;
        if (is_control(r->fh.opcode)) {
            /* fits: check_header bounded the length to WS_MAX_CONTROL */
            if (n) {
                if (r->fh.masked)
                    r->mask_pos = ws_mask(r->ctl + r->ctl_len, buf + pos, n,
                                          r->fh.key, r->mask_pos);
                else
                    memcpy(r->ctl + r->ctl_len, buf + pos, n);
            }
            r->ctl_len += n;
            pos += n;
            r->remaining -= n;
            *used = pos;
            if (r->remaining)
                return WS_READ_NEED;
            end_frame(r);
            return control_event(r, ev);
        }
        if (n) {
            rc = append(r, buf + pos, n);
            pos += n;
            r->remaining -= n;
            if (rc != WS_READ_EVENT) {
                *used = pos;
                return rc;
            }
        }
        if (r->remaining) {
            *used = pos;
            return WS_READ_NEED;
        }
        end_frame(r);
        if (!r->fh.fin)
            continue;
        if (check_text(r) && !ws_utf8_done(&r->utf8)) {
            *used = pos;
            return fail(r, 1007, "invalid utf-8");
        }
        message_event(ev, r->msg_opcode, r->msg_rsv, r->buf, r->buf_len);
        r->msg_opcode = 0;
        *used = pos;
        return WS_READ_EVENT;
    }
}
