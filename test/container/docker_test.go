package container

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lfnet/lfnet/test/internal/chatproc"
)

// Every object the tests create carries labelKey (and labelStarted, the unix time of the
// run), so that a later run can remove what a crashed run left behind.
const (
	labelKey     = "lfnet.test"
	labelValue   = "container"
	labelStarted = "lfnet.test.started"
	// staleAfter: objects of a run older than this are left over (a run takes minutes).
	staleAfter = time.Hour
)

var runStarted = strconv.FormatInt(time.Now().Unix(), 10)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if img, ok := builtImage(); ok {
			_ = exec.Command("docker", "rmi", "-f", img).Run()
		}
		os.Exit(code)
	}))
}

// requireDocker skips the test when no Docker daemon (or docker-compose) is usable, unless
// CI or LFNET_REQUIRE_DOCKER asks for the container tests, which then fail instead: a CI
// machine with a daemon must not pass by skipping them.
func requireDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("container tests build images and run containers")
	}
	var reason string
	if _, err := exec.LookPath("docker"); err != nil {
		reason = "no docker CLI in PATH"
	} else if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		reason = fmt.Sprintf("docker info failed: %v: %s", err, bytes.TrimSpace(out))
	} else if _, err := exec.LookPath("docker-compose"); err != nil {
		reason = "no docker-compose in PATH"
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") != "" || os.Getenv("LFNET_REQUIRE_DOCKER") == "1" {
		t.Fatalf("container tests required (CI or LFNET_REQUIRE_DOCKER set) but %s", reason)
	}
	t.Skip(reason)
}

// run runs a command and returns its trimmed standard output.
func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSpace(string(out)), nil
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// removeStale removes containers, networks and images of earlier runs that are older than
// staleAfter; younger ones may belong to a run going on right now.
func removeStale(t *testing.T) {
	t.Helper()
	cutoff := time.Now().Add(-staleAfter).Unix()
	out, err := run("docker", "ps", "-a", "--filter", "label="+labelKey, "--format", `{{.ID}} {{.Label "`+labelStarted+`"}}`)
	if err != nil {
		t.Logf("list stale containers: %v", err)
		return
	}
	for _, line := range strings.Split(out, "\n") {
		id, started, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if s, err := strconv.ParseInt(started, 10, 64); err == nil && s < cutoff {
			if _, err := run("docker", "rm", "-f", id); err != nil {
				t.Logf("remove stale container: %v", err)
			}
		}
	}
	until := "until=" + staleAfter.String()
	for _, kind := range [][]string{{"network", "prune"}, {"image", "prune", "-a"}} {
		args := append(kind, "-f", "--filter", "label="+labelKey, "--filter", until)
		if _, err := run("docker", args...); err != nil {
			t.Logf("docker %s: %v", strings.Join(args, " "), err)
		}
	}
}

var (
	imageMu  sync.Mutex
	imageTag string
)

func builtImage() (string, bool) {
	imageMu.Lock()
	defer imageMu.Unlock()
	return imageTag, imageTag != ""
}

// image builds, once per run, an image FROM scratch holding static lfchat and lfnode.
func image(t *testing.T) string {
	t.Helper()
	imageMu.Lock()
	defer imageMu.Unlock()
	if imageTag != "" {
		return imageTag
	}
	removeStale(t)
	dir := t.TempDir()
	start := time.Now()
	if _, err := chatproc.Build(dir, true, "github.com/lfnet/lfnet/cmd/lfchat", "github.com/lfnet/lfnet/cmd/lfnode"); err != nil {
		t.Fatal(err)
	}
	t.Logf("static binaries built in %v", time.Since(start).Round(time.Second))
	dockerfile := "FROM scratch\nCOPY lfchat lfnode /\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := "lfnet-test:" + randomHex(6)
	start = time.Now()
	mustRun(t, "docker", "build", "-q", "-t", tag, "--label", labelKey+"="+labelValue, "--label", labelStarted+"="+runStarted, dir)
	t.Logf("image %s built in %v", tag, time.Since(start).Round(time.Second))
	imageTag = tag
	return tag
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// project is one docker-compose project: the networks and lfnode of one test, plus the
// lfchat containers the test runs on those networks.
type project struct {
	t     *testing.T
	name  string
	file  string
	image string
}

// lfnodePort is where lfnode listens inside its container.
const lfnodePort = 4001

// composeFile declares internal networks (no route out of them, none between them) and an
// lfnode attached to all of them, relaying without libp2p's default limits.
func composeFile(networks []string) string {
	var b strings.Builder
	b.WriteString("version: \"2.4\"\nservices:\n  lfnode:\n    image: ${LFNET_IMAGE}\n")
	fmt.Fprintf(&b, "    command: [\"/lfnode\", \"--data\", \"/data\", \"--listen\", \"/ip4/0.0.0.0/tcp/%d\", \"--nat-portmap=false\", \"--relay-unlimited\", \"--log-level\", \"warn\"]\n", lfnodePort)
	b.WriteString("    tmpfs: [/data]\n")
	fmt.Fprintf(&b, "    labels: {%s: %s, %s: \"${LFNET_STARTED}\"}\n", labelKey, labelValue, labelStarted)
	b.WriteString("    networks: [" + strings.Join(networks, ", ") + "]\nnetworks:\n")
	for _, n := range networks {
		fmt.Fprintf(&b, "  %s:\n    internal: true\n    labels: {%s: %s, %s: \"${LFNET_STARTED}\"}\n", n, labelKey, labelValue, labelStarted)
	}
	return b.String()
}

// startProject brings up the compose project and tears it down when the test ends.
func startProject(t *testing.T, networks ...string) *project {
	t.Helper()
	img := image(t)
	p := &project{t: t, name: "lfnettest" + randomHex(4), file: filepath.Join(t.TempDir(), "compose.yaml"), image: img}
	if err := os.WriteFile(p.file, []byte(composeFile(networks)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.down)
	start := time.Now()
	p.compose("up", "-d")
	t.Logf("compose project %s up in %v", p.name, time.Since(start).Round(time.Second))
	return p
}

func (p *project) composeCmd(args ...string) *exec.Cmd {
	cmd := exec.Command("docker-compose", append([]string{"-p", p.name, "-f", p.file}, args...)...)
	cmd.Env = append(os.Environ(), "LFNET_IMAGE="+p.image, "LFNET_STARTED="+runStarted)
	return cmd
}

func (p *project) compose(args ...string) string {
	p.t.Helper()
	var stderr bytes.Buffer
	cmd := p.composeCmd(args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("docker-compose %s: %v: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

// down removes the project's lfchat containers (normally gone already: they run with
// --rm), then its lfnode and networks.
func (p *project) down() {
	if ids, err := run("docker", "ps", "-aq", "--filter", "label=lfnet.test.project="+p.name); err == nil && ids != "" {
		if _, err := run("docker", append([]string{"rm", "-f"}, strings.Fields(ids)...)...); err != nil {
			p.t.Errorf("remove lfchat containers: %v", err)
		}
	}
	cmd := p.composeCmd("down", "-v", "--remove-orphans", "-t", "5")
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Errorf("docker-compose down: %v: %s", err, out)
	}
}

func (p *project) network(n string) string { return p.name + "_" + n }

// lfnodeAddr returns lfnode's full TCP multiaddr on network n, from the address lines it
// prints once it listens.
func (p *project) lfnodeAddr(n string) string {
	p.t.Helper()
	container := p.compose("ps", "-q", "lfnode")
	ip := mustRun(p.t, "docker", "inspect", "-f", fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, p.network(n)), container)
	want := fmt.Sprintf("/ip4/%s/tcp/%d/p2p/", ip, lfnodePort)
	deadline := time.Now().Add(60 * time.Second)
	for {
		logs, err := run("docker", "logs", container)
		if err != nil {
			p.t.Fatal(err)
		}
		for _, line := range strings.Split(logs, "\n") {
			if strings.HasPrefix(line, want) {
				return line
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("lfnode printed no address %s…; output:\n%s", want, logs)
		}
		time.Sleep(200 * time.Millisecond) // polling interval, not synchronisation
	}
}

// chat runs lfchat --script as name in a container on network n, its data directory on a
// tmpfs inside the container. lfchat reads its input from stdin and prints its output as
// lines, so every node runs under its own `docker run -i`, which pipes both, and the same
// chatproc helper drives it as it drives local processes.
func (p *project) chat(name, n string, args ...string) *chatproc.Proc {
	p.t.Helper()
	run := []string{"run", "-i", "--rm", "--name", p.name + "-" + name, "--network", p.network(n), "--tmpfs", "/data",
		"--label", labelKey + "=" + labelValue, "--label", labelStarted + "=" + runStarted, "--label", "lfnet.test.project=" + p.name,
		p.image, "/lfchat", "--script", "--listen", "/ip4/0.0.0.0/tcp/4001", "--data", "/data", "--nick", name}
	proc := chatproc.Start(p.t, name, exec.Command("docker", append(run, args...)...))
	proc.Patience = 3 * time.Minute
	return proc
}

func (p *project) container(name string) string { return p.name + "-" + name }

// topic is a fresh room id.
func topic() string { return randomHex(32) }
