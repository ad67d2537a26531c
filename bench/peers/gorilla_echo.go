// gorilla/websocket echo server on /ws:  gorilla_echo PORT [deflate | tls CERT KEY]
// tls: wss:// over crypto/tls
// deflate: EnableCompression (gorilla offers no context takeover only, level 1)
// Built in GOPATH mode against Debian's golang-github-gorilla-websocket-dev.
package main

import (
	"log"
	"net/http"
	"os"

	"github.com/gorilla/websocket"
)

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
	CheckOrigin:     func(*http.Request) bool { return true },
}

func echo(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetReadLimit(16 << 20)
	c.EnableWriteCompression(upgrader.EnableCompression)
	for {
		kind, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(kind, msg); err != nil {
			return
		}
	}
}

func main() {
	port := "8080"
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	upgrader.EnableCompression = len(os.Args) > 2 && os.Args[2] == "deflate"
	http.HandleFunc("/ws", echo)
	if len(os.Args) > 4 && os.Args[2] == "tls" {
		log.Fatal(http.ListenAndServeTLS("127.0.0.1:"+port, os.Args[3], os.Args[4], nil))
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:"+port, nil))
}
