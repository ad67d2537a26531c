// tlsup: TLS upgrade load, the "TLS upgrades/s" column's generator.
//
//	tlsup [--port P] [--conns N] [--secs S] [--warmup S] [--pid PID]
//
// N slots each churn: connect, TLS 1.3 handshake (X25519, no resumption),
// WebSocket upgrade (the 101 and its Sec-WebSocket-Accept checked), a masked
// close frame, the server's close frame, TCP close. It prints one line like
// wsload's: RESULT mode=upgrade ... upgrades_per_s=... [server_cpu_us_per_upgrade=...]
//
// Why not wsload: OpenSSL 3.0's client spends about 4.7M instructions per
// handshake (1.5M of them decoding the server's certificate), more than any
// server under test, so wsload on its own core measured itself. Go's client
// needs a fraction of that, which leaves the server the bottleneck.
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	port   = flag.Int("port", 8080, "server port on 127.0.0.1")
	conns  = flag.Int("conns", 16, "concurrent slots")
	secs   = flag.Float64("secs", 5, "measured seconds")
	warmup = flag.Float64("warmup", 0.5, "seconds before measuring")
	pid    = flag.Int("pid", 0, "server pid: report its CPU per upgrade")
)

var (
	measuring atomic.Bool
	upgrades  atomic.Int64
	errs      atomic.Int64
	suite     atomic.Uint32
	firstErr  sync.Once
)

// cpuTicks is utime+stime of pid in clock ticks (fields 14 and 15 of stat).
func cpuTicks(p int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func fail(err error) {
	errs.Add(1)
	firstErr.Do(func() { fmt.Fprintln(os.Stderr, "tlsup:", err) })
}

// one upgrade from connect to TCP close
func upgrade(cfg *tls.Config, addr string, buf []byte) error {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(raw, cfg)
	if err := c.Handshake(); err != nil {
		return err
	}
	suite.Store(uint32(c.ConnectionState().CipherSuite))
	var k [16]byte
	rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := "GET /ws HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return err
	}
	r := bufio.NewReaderSize(c, 1024)
	status, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		return fmt.Errorf("status %q", strings.TrimSpace(status))
	}
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	want, accepted := base64.StdEncoding.EncodeToString(h[:]), false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		if i := strings.IndexByte(line, ':'); i > 0 && strings.EqualFold(line[:i], "Sec-WebSocket-Accept") {
			accepted = strings.TrimSpace(line[i+1:]) == want
		}
	}
	if !accepted {
		return fmt.Errorf("bad Sec-WebSocket-Accept")
	}
	// close 1000, masked with a zero key (any key is valid)
	if _, err := c.Write([]byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8}); err != nil {
		return err
	}
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return err
	}
	if buf[0] != 0x88 || buf[1]&0x80 != 0 || buf[1] > 125 {
		return fmt.Errorf("expected the server's close frame, got %x", buf[:2])
	}
	if _, err := io.ReadFull(r, buf[:buf[1]]); err != nil {
		return err
	}
	if measuring.Load() {
		upgrades.Add(1)
	}
	return nil
}

func main() {
	flag.Parse()
	addr := "127.0.0.1:" + strconv.Itoa(*port)
	cfg := &tls.Config{
		InsecureSkipVerify: true, // the signature over the handshake is still checked
		MinVersion:         tls.VersionTLS13,
		CurvePreferences:   []tls.CurveID{tls.X25519},
		ClientSessionCache: nil, // every handshake is a full one
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 128)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := upgrade(cfg, addr, buf); err != nil {
					fail(err)
					if errs.Load() > 1000 {
						return
					}
				}
			}
		}()
	}
	time.Sleep(time.Duration(*warmup * float64(time.Second)))
	c0 := int64(-1)
	if *pid > 0 {
		c0 = cpuTicks(*pid)
	}
	t0 := time.Now()
	measuring.Store(true)
	time.Sleep(time.Duration(*secs * float64(time.Second)))
	measuring.Store(false)
	n, elapsed := upgrades.Load(), time.Since(t0).Seconds()
	c1 := int64(-1)
	if *pid > 0 {
		c1 = cpuTicks(*pid)
	}
	close(stop)
	wg.Wait()
	fmt.Printf("RESULT mode=upgrade conns=%d secs=%.2f upgrades=%d upgrades_per_s=%.0f errors=%d cipher=%s",
		*conns, elapsed, n, float64(n)/elapsed, errs.Load(), tls.CipherSuiteName(uint16(suite.Load())))
	if c0 >= 0 && c1 >= 0 && n > 0 {
		// clock ticks are 1/100 s on Linux
		fmt.Printf(" server_cpu_us_per_upgrade=%.1f", float64(c1-c0)*1e4/float64(n))
	}
	fmt.Println()
}
