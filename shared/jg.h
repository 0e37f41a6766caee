/* jg.h — the few definitions every jobgate file shares: return codes, version, limits. */
#ifndef JG_H
#define JG_H

#define JG_VERSION "0.1.0"

#define JG_OK      0
#define JG_ERR    -1
#define JG_PARKED  1   /* a handler handed its request to the event loop (see server.h) */

#define JG_NAME_MAX   64    /* queue and type names: ^[a-z0-9][a-z0-9_.-]{0,63}$ */
#define JG_ID_MAX     64    /* job ids */
#define JG_ID_LEN     31    /* ids we mint: 8 hex (queue tag) '.' 22 base64url */
#define JG_TAG_LEN    8     /* hash tag of a queue: first 8 hex of SHA-256(queue) */
#define JG_JSON_MAX_DEPTH 64

#define JG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
