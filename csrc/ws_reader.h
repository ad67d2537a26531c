/* Incremental frame reader: bytes in (any split), whole messages and control
 * frames out, or a protocol error carrying the close code to send.
 * Knows nothing of sockets or Lua. */
#ifndef WS_READER_H
#define WS_READER_H

#include <stddef.h>
#include <stdint.h>
#include "ws_frame.h"
#include "ws_utf8.h"

#pragma GCC visibility push(hidden)   /* internal to ws/core.so: see ws_binding.h */

enum { WS_ROLE_SERVER = 0, WS_ROLE_CLIENT = 1 };

typedef struct {
    int role;                 /* WS_ROLE_SERVER: frames must be masked; CLIENT: must not be */
    uint64_t max_message;     /* 0: no limit; else total payload of one message (RSV1: a little more, see wire_max) */
    int rsv_allowed;          /* RSV bits an extension allows on the first frame of a data message (0 now) */
} ws_reader_opts;

typedef struct {
    int opcode;               /* WS_OP_TEXT/BINARY for messages, CLOSE/PING/PONG for control */
    int rsv;                  /* RSV bits of the message's first frame */
    const unsigned char *data;/* payload (unmasked, reassembled); valid until the next feed */
    size_t len;
    unsigned close_code;      /* CLOSE only: code, 1005 when the payload was empty */
    const unsigned char *reason; /* CLOSE only: reason text (within data) */
    size_t reason_len;
} ws_event;

typedef struct {
    ws_reader_opts opts;
    /* frame in progress */
    unsigned char hbuf[WS_MAX_HEADER];
    size_t hlen;              /* header bytes buffered so far */
    int in_header;            /* 1 while reading a header */
    ws_frame_header fh;       /* current frame */
    uint64_t remaining;       /* payload bytes still to read for the current frame */
    size_t mask_pos;
    /* data message in progress */
    int msg_opcode;           /* 0: none in progress */
    int msg_rsv;
    ws_utf8 utf8;
    unsigned char *buf;       /* message payload */
    size_t buf_len, buf_cap;
    /* control frame in progress */
    unsigned char ctl[WS_MAX_CONTROL];
    size_t ctl_len;
    /* error */
    unsigned error_code;      /* 0, or 1002/1007/1009 once failed */
    const char *error;        /* static reason text */
} ws_reader;

enum { WS_READ_NEED = 0, WS_READ_EVENT = 1, WS_READ_ERROR = -1, WS_READ_NOMEM = -2 };

void ws_reader_init(ws_reader *r, const ws_reader_opts *opts);
void ws_reader_free(ws_reader *r);   /* releases the buffer; r may be reused after init */

/* Consume bytes of buf[0..len) until one event is complete or the input is
 * used up. *used is set to the bytes consumed. On WS_READ_EVENT, *ev holds
 * the event; call again with the rest of the input. On WS_READ_ERROR,
 * r->error_code and r->error say why, and every later call fails the same way.
 * WS_READ_NOMEM (allocation failed) sets error_code 1011, "out of memory",
 * and later calls return WS_READ_ERROR. ev->data is never NULL. The message
 * buffer grows with the bytes that arrive (never past the frame's end on a
 * final frame, nor past max_message, or for an RSV1 message what DEFLATE
 * may expand max_message bytes to), and one above 64 KiB is freed on the
 * feed after its message was delivered. */
int ws_reader_feed(ws_reader *r, const unsigned char *buf, size_t len,
                   size_t *used, ws_event *ev);

#pragma GCC visibility pop

#endif
