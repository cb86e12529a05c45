// Package chatproc drives lfchat processes in --script mode for tests: it starts them
// (directly, or through a container runtime's CLI), feeds them lines, and follows the JSON
// lines they print, so a test can wait for messages, presence and connections.
package chatproc

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles the named commands (import paths) into dir and returns their paths. static
// builds them with CGO_ENABLED=0, for images FROM scratch.
func Build(dir string, static bool, pkgs ...string) ([]string, error) {
	var out []string
	for _, pkg := range pkgs {
		bin := filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		if static {
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		}
		if msg, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
		}
		out = append(out, bin)
	}
	return out, nil
}

// Event is one line of lfchat --script output.
type Event struct {
	Type    string   `json:"type"`
	ID      string   `json:"id"`
	Topic   string   `json:"topic"`
	Addrs   []string `json:"addrs"`
	Addr    string   `json:"addr"`
	Nick    string   `json:"nick"`
	Text    string   `json:"text"`
	Own     bool     `json:"own"`
	Online  bool     `json:"online"`
	Relayed bool     `json:"relayed"`
	Up      bool     `json:"up"`
}

// Proc is a running lfchat in script mode.
type Proc struct {
	t     testing.TB
	Name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	// Ready is the process's first line: its id, topic and addresses.
	Ready Event
	// Patience bounds every wait (default 90 s).
	Patience time.Duration
	done     chan struct{}

	mu     sync.Mutex
	texts  map[string]int     // received message texts, counted
	online map[string]bool    // presence by nick, from gossip heartbeats
	conns  map[string][]Event // open connections by peer id
	cond   chan struct{}      // signalled on every new line
}

// Start runs cmd, which must run lfchat with --script, and waits for its ready line. The
// process is stopped when the test ends.
func Start(t testing.TB, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &prefixWriter{t: t, prefix: name + ": "}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{
		t: t, Name: name, cmd: cmd, stdin: stdin, Patience: 90 * time.Second, done: make(chan struct{}),
		texts: map[string]int{}, online: map[string]bool{}, conns: map[string][]Event{}, cond: make(chan struct{}, 1),
	}
	readyCh := make(chan Event, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("%s: unparseable line %q", name, sc.Text())
				continue
			}
			p.mu.Lock()
			switch ev.Type {
			case "ready":
				select {
				case readyCh <- ev:
				default:
					t.Errorf("%s: a second ready line %q", name, sc.Text())
				}
			case "presence":
				p.online[ev.Nick] = ev.Online
			case "message":
				if !ev.Own {
					p.texts[ev.Text]++
				}
			case "connection":
				open := p.conns[ev.ID]
				for i, c := range open {
					if c.Addr == ev.Addr {
						open = append(open[:i], open[i+1:]...)
						break
					}
				}
				if ev.Up {
					open = append(open, ev)
				}
				p.conns[ev.ID] = open
			}
			p.mu.Unlock()
			select {
			case p.cond <- struct{}{}:
			default:
			}
		}
	}()
	select {
	case p.Ready = <-readyCh:
	case <-p.done:
		_ = cmd.Wait()
		t.Fatalf("%s ended before it was ready", name)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("%s did not start", name)
	}
	t.Cleanup(p.Stop)
	return p
}

// Say sends one line, as if typed.
func (p *Proc) Say(text string) {
	p.t.Helper()
	if _, err := fmt.Fprintln(p.stdin, text); err != nil {
		p.t.Fatalf("%s: write: %v", p.Name, err)
	}
}

// poll re-checks p's received state, under its lock, as lines arrive: check returns what
// is still missing ("" when done), or a failure that ends the test.
func (p *Proc) poll(what string, check func() (missing, failure string)) {
	p.t.Helper()
	deadline := time.After(p.Patience)
	for {
		p.mu.Lock()
		missing, failure := check()
		p.mu.Unlock()
		if failure != "" {
			p.t.Fatal(failure)
		}
		if missing == "" {
			return
		}
		select {
		case <-p.cond:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			p.t.Fatalf("%s never %s %q", p.Name, what, missing)
		}
	}
}

// WaitFor waits until p has received each text, and fails if any arrived twice.
func (p *Proc) WaitFor(texts ...string) {
	p.t.Helper()
	p.poll("received", func() (string, string) {
		for _, txt := range texts {
			if n := p.texts[txt]; n > 1 {
				return "", fmt.Sprintf("%s received %q %d times", p.Name, txt, n)
			}
		}
		for _, txt := range texts {
			if p.texts[txt] == 0 {
				return txt, ""
			}
		}
		return "", ""
	})
}

// Received returns how many times p has received text so far.
func (p *Proc) Received(text string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.texts[text]
}

// WaitOnline waits until p's presence view shows every nick online.
func (p *Proc) WaitOnline(nicks ...string) {
	p.t.Helper()
	p.poll("saw online", func() (string, string) {
		for _, n := range nicks {
			if !p.online[n] {
				return n, ""
			}
		}
		return "", ""
	})
}

// WaitConnected waits until p has an open connection to the node id and returns p's open
// connections to it.
func (p *Proc) WaitConnected(id string) []Event {
	p.t.Helper()
	var open []Event
	p.poll("connected to", func() (string, string) {
		open = append([]Event(nil), p.conns[id]...)
		if len(open) == 0 {
			return id, ""
		}
		return "", ""
	})
	return open
}

// Stop ends the process the way a user does: end of input, then an interrupt.
func (p *Proc) Stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	if err := p.cmd.Wait(); err != nil {
		p.t.Errorf("%s exited with %v", p.Name, err)
	}
}

// Kill ends the process abruptly, as a crash or power loss would.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

type prefixWriter struct {
	t      testing.TB
	prefix string
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s%s", w.prefix, b)
	return len(b), nil
}
