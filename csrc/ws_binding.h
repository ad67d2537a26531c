/* What the binding files (ws_core.c, ws_core_sys.c) share. The only
 * headers besides the Lua ones that know of lua_State. */
#ifndef WS_BINDING_H
#define WS_BINDING_H

#include <lua.h>

#define FD_MT "ws.fd"

/* ws_core.c: push a new ws.fd owning descriptor fd (plain, no TLS). */
void ws_core_push_fd(lua_State *L, int fd);

/* ws_core.c: the descriptor of the ws.fd at idx (-1 once closed); raises
 * if it is not a ws.fd. */
int ws_core_check_fd(lua_State *L, int idx);

/* ws_core_sys.c: add the deployment functions (listeners, signals,
 * processes, PROXY) to the module table on top of the stack. */
int ws_core_sys_register(lua_State *L);

#endif
