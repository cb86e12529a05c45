package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/lfnet/lfnet/test/internal/chatproc"
)

// buildChat compiles lfchat once per test binary run.
var buildChat = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "lfchat-bin")
	if err != nil {
		return "", err
	}
	bins, err := chatproc.Build(dir, false, "github.com/lfnet/lfnet/cmd/lfchat")
	if err != nil {
		return "", err
	}
	return bins[0], nil
})

// startChat runs lfchat on loopback as name, with extra flags.
func startChat(t *testing.T, name string, args ...string) *chatproc.Proc {
	t.Helper()
	bin, err := buildChat()
	if err != nil {
		t.Fatal(err)
	}
	args = append([]string{"--script", "--listen", "/ip4/127.0.0.1/tcp/0", "--nick", name}, args...)
	return chatproc.Start(t, name, exec.Command(bin, args...))
}

func TestChatProcessesExchangeAndCatchUpAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs lfchat processes")
	}
	a := startChat(t, "alice")
	topic, boot := a.Ready.Topic, a.Ready.Addrs[0]
	carolData := filepath.Join(t.TempDir(), "carol")
	b := startChat(t, "bob", "--topic", topic, "--bootstrap", boot)
	c := startChat(t, "carol", "--topic", topic, "--bootstrap", boot, "--data", carolData)

	a.Say("hi from alice")
	b.Say("hi from bob")
	c.Say("hi from carol")
	a.WaitFor("hi from bob", "hi from carol")
	b.WaitFor("hi from alice", "hi from carol")
	c.WaitFor("hi from alice", "hi from bob")
	// Presence travels over gossip heartbeats.
	a.WaitOnline("bob", "carol")
	b.WaitOnline("alice", "carol")

	c.Kill()
	a.Say("while carol was away")
	b.Say("bob too")
	a.WaitFor("bob too")

	c2 := startChat(t, "carol", "--topic", topic, "--bootstrap", boot, "--data", carolData)
	// The restarted node shows its stored history and then receives what it missed.
	c2.WaitFor("hi from alice", "hi from bob", "while carol was away", "bob too")
	c2.Say("carol is back")
	a.WaitFor("carol is back")
	b.WaitFor("carol is back")
}
