// gorilla/websocket fan-out server on /ws in the shape of gorilla's chat
// example: one hub goroutine owns the clients; each client has a read pump
// and a write pump fed by a buffered channel (a full one drops the client).
// Every message goes to all the other clients.  gorilla_fanout PORT
package main

import (
	"log"
	"net/http"
	"os"

	"github.com/gorilla/websocket"
)

type message struct {
	from *client
	kind int
	data []byte
}

type client struct {
	conn *websocket.Conn
	send chan message
}

type hub struct {
	clients    map[*client]bool
	broadcast  chan message
	register   chan *client
	unregister chan *client
}

func (h *hub) run() {
	for {
		select {
		case c := <-h.register:
			h.clients[c] = true
		case c := <-h.unregister:
			if h.clients[c] {
				delete(h.clients, c)
				close(c.send)
			}
		case m := <-h.broadcast:
			for c := range h.clients {
				if c == m.from {
					continue
				}
				select {
				case c.send <- m:
				default:
					delete(h.clients, c)
					close(c.send)
				}
			}
		}
	}
}

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
	CheckOrigin:     func(*http.Request) bool { return true },
}

func (c *client) readPump(h *hub) {
	defer func() { h.unregister <- c; c.conn.Close() }()
	c.conn.SetReadLimit(16 << 20)
	for {
		kind, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		h.broadcast <- message{c, kind, data}
	}
}

func (c *client) writePump() {
	defer c.conn.Close()
	for m := range c.send {
		if err := c.conn.WriteMessage(m.kind, m.data); err != nil {
			return
		}
	}
	c.conn.WriteMessage(websocket.CloseMessage, []byte{})
}

func main() {
	port := "8080"
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	h := &hub{clients: map[*client]bool{}, broadcast: make(chan message),
		register: make(chan *client), unregister: make(chan *client)}
	go h.run()
	http.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c := &client{conn: conn, send: make(chan message, 256)}
		h.register <- c
		go c.writePump()
		go c.readPump(h)
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:"+port, nil))
}
