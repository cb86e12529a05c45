package test

import (
	"bufio"
	"context"
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

// buildChat compiles lfchat once per test binary run.
var buildChat = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "lfchat-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "lfchat")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/lfnet/lfnet/cmd/lfchat").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build lfchat: %v\n%s", err, out)
	}
	return bin, nil
})

// chatEvent is one line of lfchat --script output.
type chatEvent struct {
	Type   string   `json:"type"`
	ID     string   `json:"id"`
	Topic  string   `json:"topic"`
	Addrs  []string `json:"addrs"`
	Nick   string   `json:"nick"`
	Text   string   `json:"text"`
	Own    bool     `json:"own"`
	Online bool     `json:"online"`
}

// chatProc is a running lfchat process in script mode.
type chatProc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready chatEvent
	done  chan struct{}

	mu     sync.Mutex
	texts  map[string]int  // received message texts, counted
	online map[string]bool // presence by nick, from gossip heartbeats
	cond   chan struct{}   // signalled on every new line
}

func startChat(t *testing.T, name string, args ...string) *chatProc {
	t.Helper()
	bin, err := buildChat()
	if err != nil {
		t.Fatal(err)
	}
	args = append([]string{"--script", "--listen", "/ip4/127.0.0.1/tcp/0", "--nick", name}, args...)
	cmd := exec.Command(bin, args...)
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
	p := &chatProc{t: t, name: name, cmd: cmd, stdin: stdin, done: make(chan struct{}), texts: map[string]int{}, online: map[string]bool{}, cond: make(chan struct{}, 1)}
	readyCh := make(chan chatEvent, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev chatEvent
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("%s: unparseable line %q", name, sc.Text())
				continue
			}
			switch ev.Type {
			case "ready":
				readyCh <- ev
			case "presence":
				p.mu.Lock()
				p.online[ev.Nick] = ev.Online
				p.mu.Unlock()
			case "message":
				if !ev.Own {
					p.mu.Lock()
					p.texts[ev.Text]++
					p.mu.Unlock()
				}
			}
			select {
			case p.cond <- struct{}{}:
			default:
			}
		}
	}()
	select {
	case p.ready = <-readyCh:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("%s did not start", name)
	}
	t.Cleanup(func() { p.stop() })
	return p
}

func (p *chatProc) say(text string) {
	p.t.Helper()
	if _, err := fmt.Fprintln(p.stdin, text); err != nil {
		p.t.Fatalf("%s: write: %v", p.name, err)
	}
}

// poll re-checks p's received state, under its lock, as lines arrive: check returns what
// is still missing ("" when done), or a failure that ends the test.
func (p *chatProc) poll(what string, check func() (missing, failure string)) {
	p.t.Helper()
	deadline := time.After(90 * time.Second)
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
			p.t.Fatalf("%s never %s %q", p.name, what, missing)
		}
	}
}

// waitFor waits until p has received each text, and fails if any arrived twice.
func (p *chatProc) waitFor(texts ...string) {
	p.t.Helper()
	p.poll("received", func() (string, string) {
		for _, txt := range texts {
			if n := p.texts[txt]; n > 1 {
				return "", fmt.Sprintf("%s received %q %d times", p.name, txt, n)
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

// waitOnline waits until p's presence view shows every nick online.
func (p *chatProc) waitOnline(nicks ...string) {
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

// stop ends the process the way a user does: end of input, then an interrupt.
func (p *chatProc) stop() {
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
		p.t.Errorf("%s exited with %v", p.name, err)
	}
}

// kill ends the process abruptly, as a crash or power loss would.
func (p *chatProc) kill() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

type prefixWriter struct {
	t      *testing.T
	prefix string
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	w.t.Logf("%s%s", w.prefix, b)
	return len(b), nil
}

func TestChatProcessesExchangeAndCatchUpAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs lfchat processes")
	}
	_, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := startChat(t, "alice")
	topic, boot := a.ready.Topic, a.ready.Addrs[0]
	carolData := filepath.Join(t.TempDir(), "carol")
	b := startChat(t, "bob", "--topic", topic, "--bootstrap", boot)
	c := startChat(t, "carol", "--topic", topic, "--bootstrap", boot, "--data", carolData)

	a.say("hi from alice")
	b.say("hi from bob")
	c.say("hi from carol")
	a.waitFor("hi from bob", "hi from carol")
	b.waitFor("hi from alice", "hi from carol")
	c.waitFor("hi from alice", "hi from bob")
	// Presence travels over gossip heartbeats.
	a.waitOnline("bob", "carol")
	b.waitOnline("alice", "carol")

	c.kill()
	a.say("while carol was away")
	b.say("bob too")
	a.waitFor("bob too")

	c2 := startChat(t, "carol", "--topic", topic, "--bootstrap", boot, "--data", carolData)
	// The restarted node shows its stored history and then receives what it missed.
	c2.waitFor("hi from alice", "hi from bob", "while carol was away", "bob too")
	c2.say("carol is back")
	a.waitFor("carol is back")
	b.waitFor("carol is back")
}
