// Package mdns is a small multicast-DNS service announcer and browser (RFC 6762 / 6763
// subset, IPv4 only) for finding lfnet nodes on the local network.
//
// A node announces one service instance whose TXT record holds its addresses, answers PTR
// queries for its service type, and queries periodically for other instances. It runs on
// exactly the interfaces it is given, which is what lets tests keep it on the loopback
// interface, and it never sends unicast.
package mdns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/ipv4"
)

// DefaultPort is the mDNS port.
const DefaultPort = 5353

// Limits on what is taken from a packet, so that hostile LAN traffic costs bounded memory.
const (
	maxPacket            = 9000 // RFC 6762 §17
	maxInstancesPerPkt   = 16
	maxTXTPerInstance    = 32
	maxAnnouncementBytes = 1400 // keep our own packets within one Ethernet frame
	recordTTL            = 120  // seconds, RFC 6762 §10 for records with host names
	minQueryInterval     = time.Second
	maxQueryInterval     = time.Minute
	minResponseGap       = time.Second // RFC 6762 §6: at most one multicast per second per record
)

var group = net.IPv4(224, 0, 0, 251)

// ErrNoInterface is returned by Start when no usable interface is available.
var ErrNoInterface = errors.New("mdns: no usable multicast interface")

// Config describes one announced instance and where to run.
type Config struct {
	// Service is the DNS-SD service type, e.g. "_lfnet-0123abcd._udp" (".local." is added).
	Service string
	// Instance is this node's instance label, unique per node (random is fine).
	Instance string
	// TXT returns the strings to announce; called for each announcement, so it can follow
	// address changes.
	TXT func() []string
	// Found is called with the TXT strings of every other instance heard, from the receiving
	// goroutine; it must not block.
	Found func(instance string, txt []string)
	// Interfaces to run on; nil means every interface that is up, multicast-capable and has
	// an IPv4 address.
	Interfaces []net.Interface
	// Port is the UDP port (DefaultPort when 0); tests use another to stay private.
	Port int
	// Logger for debug output; nil discards.
	Logger *slog.Logger
}

type iface struct {
	ifi  net.Interface
	send *ipv4.PacketConn
	conn net.PacketConn
}

// Service runs the announcer and browser until Close.
type Service struct {
	cfg         Config
	serviceName string // "<Service>.local."
	instName    string // "<Instance>.<Service>.local."
	log         *slog.Logger
	recv        *ipv4.PacketConn
	recvConn    net.PacketConn
	ifaces      map[int]*iface
	dest        *net.UDPAddr

	mu           sync.Mutex
	lastResponse map[int]time.Time

	done chan struct{}
	wg   sync.WaitGroup
}

// Start opens the sockets, announces the instance and starts querying.
func Start(cfg Config) (*Service, error) {
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		cfg:          cfg,
		serviceName:  cfg.Service + ".local.",
		instName:     cfg.Instance + "." + cfg.Service + ".local.",
		log:          log,
		ifaces:       make(map[int]*iface),
		dest:         &net.UDPAddr{IP: group, Port: cfg.Port},
		lastResponse: make(map[int]time.Time),
		done:         make(chan struct{}),
	}
	if _, err := dnsmessage.NewName(s.instName); err != nil {
		return nil, fmt.Errorf("mdns: instance name: %w", err)
	}
	ifis := cfg.Interfaces
	if ifis == nil {
		var err error
		if ifis, err = multicastInterfaces(); err != nil {
			return nil, err
		}
	}
	if err := s.open(ifis); err != nil {
		s.closeSockets()
		return nil, err
	}
	s.wg.Add(2)
	go s.readLoop()
	go s.queryLoop()
	return s, nil
}

func multicastInterfaces() ([]net.Interface, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("mdns: list interfaces: %w", err)
	}
	var out []net.Interface
	for _, ifi := range all {
		if ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagMulticast != 0 {
			out = append(out, ifi)
		}
	}
	return out, nil
}

func ipv4Of(ifi net.Interface) net.IP {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if ip4 := ipn.IP.To4(); ip4 != nil {
				return ip4
			}
		}
	}
	return nil
}

func (s *Service) open(ifis []net.Interface) error {
	lc := net.ListenConfig{Control: reuseControl}
	conn, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf("0.0.0.0:%d", s.cfg.Port))
	if err != nil {
		return fmt.Errorf("mdns: listen: %w", err)
	}
	s.recvConn = conn
	s.recv = ipv4.NewPacketConn(conn)
	// The interface index lets us ignore packets from interfaces we were not told to use
	// (the socket is bound to the wildcard address). Not every platform supports it.
	if err := s.recv.SetControlMessage(ipv4.FlagInterface, true); err != nil {
		s.log.Debug("mdns: no interface information on received packets", "err", err)
	}
	var errs []error
	for _, ifi := range ifis {
		ip := ipv4Of(ifi)
		if ip == nil {
			continue
		}
		if err := s.recv.JoinGroup(&ifi, &net.UDPAddr{IP: group}); err != nil {
			errs = append(errs, fmt.Errorf("join on %s: %w", ifi.Name, err))
			continue
		}
		// A send socket bound to the interface's own address keeps our packets on that
		// interface (in particular, a loopback-only node never sends on the LAN).
		sc, err := net.ListenPacket("udp4", net.JoinHostPort(ip.String(), "0"))
		if err != nil {
			errs = append(errs, fmt.Errorf("send socket on %s: %w", ifi.Name, err))
			continue
		}
		sp := ipv4.NewPacketConn(sc)
		if err := sp.SetMulticastInterface(&ifi); err != nil {
			sc.Close()
			errs = append(errs, fmt.Errorf("multicast interface %s: %w", ifi.Name, err))
			continue
		}
		_ = sp.SetMulticastTTL(255)
		// Loopback delivery is what lets nodes on the same machine find each other.
		_ = sp.SetMulticastLoopback(true)
		s.ifaces[ifi.Index] = &iface{ifi: ifi, send: sp, conn: sc}
	}
	if len(s.ifaces) == 0 {
		return fmt.Errorf("%w: %v", ErrNoInterface, errors.Join(errs...))
	}
	return nil
}

func (s *Service) closeSockets() {
	if s.recvConn != nil {
		s.recvConn.Close()
	}
	for _, i := range s.ifaces {
		i.conn.Close()
	}
}

// Close stops the service and waits for its goroutines.
func (s *Service) Close() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	close(s.done)
	s.closeSockets()
	s.wg.Wait()
	return nil
}

func (s *Service) readLoop() {
	defer s.wg.Done()
	buf := make([]byte, maxPacket)
	for {
		n, cm, _, err := s.recv.ReadFrom(buf)
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Debug("mdns: read", "err", err)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		ifindex := 0
		if cm != nil {
			ifindex = cm.IfIndex
			if _, ok := s.ifaces[ifindex]; !ok {
				continue
			}
		}
		s.handlePacket(buf[:n], ifindex)
	}
}

func (s *Service) queryLoop() {
	defer s.wg.Done()
	s.announce(0)
	s.query()
	interval := minQueryInterval
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			s.query()
			interval = min(2*interval, maxQueryInterval)
			t.Reset(interval)
		}
	}
}

// handlePacket processes one received packet: answers queries for our service and reports
// other instances found in responses.
func (s *Service) handlePacket(pkt []byte, ifindex int) {
	msg, err := parsePacket(pkt, s.serviceName)
	if err != nil {
		s.log.Debug("mdns: bad packet", "err", err)
		return
	}
	if msg.query {
		if msg.asksForService {
			s.announce(ifindex)
		}
		return
	}
	for inst, txt := range msg.instances {
		if strings.EqualFold(inst, s.cfg.Instance) {
			continue
		}
		if s.cfg.Found != nil {
			s.cfg.Found(inst, txt)
		}
	}
}

// announce multicasts our records on one interface (all when ifindex is 0 or unknown),
// at most once per minResponseGap per interface: one multicast answer reaches every asker.
func (s *Service) announce(ifindex int) {
	pkt, err := s.buildResponse()
	if err != nil {
		s.log.Debug("mdns: build response", "err", err)
		return
	}
	now := time.Now()
	for idx, i := range s.ifaces {
		if ifindex != 0 && idx != ifindex {
			continue
		}
		s.mu.Lock()
		last := s.lastResponse[idx]
		recent := !last.IsZero() && now.Sub(last) < minResponseGap
		if !recent {
			s.lastResponse[idx] = now
		}
		s.mu.Unlock()
		if recent {
			continue
		}
		s.send(i, pkt)
	}
}

func (s *Service) query() {
	pkt, err := buildQuery(s.serviceName)
	if err != nil {
		s.log.Debug("mdns: build query", "err", err)
		return
	}
	for _, i := range s.ifaces {
		s.send(i, pkt)
	}
}

func (s *Service) send(i *iface, pkt []byte) {
	if _, err := i.send.WriteTo(pkt, nil, s.dest); err != nil {
		s.log.Debug("mdns: send", "iface", i.ifi.Name, "err", err)
	}
}

func (s *Service) buildResponse() ([]byte, error) {
	var txt []string
	if s.cfg.TXT != nil {
		txt = s.cfg.TXT()
	}
	return buildResponse(s.serviceName, s.instName, txt)
}

func buildQuery(serviceName string) ([]byte, error) {
	name, err := dnsmessage.NewName(serviceName)
	if err != nil {
		return nil, err
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 64), dnsmessage.Header{})
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(dnsmessage.Question{Name: name, Type: dnsmessage.TypePTR, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	return b.Finish()
}

// buildResponse builds a response with the PTR record of the instance and its TXT record,
// keeping as many TXT strings as fit in maxAnnouncementBytes.
func buildResponse(serviceName, instName string, txt []string) ([]byte, error) {
	svc, err := dnsmessage.NewName(serviceName)
	if err != nil {
		return nil, err
	}
	inst, err := dnsmessage.NewName(instName)
	if err != nil {
		return nil, err
	}
	var kept []string
	size := 12 + len(serviceName) + 2 + 10 + len(instName) + 2 + 10 + len(instName) + 2 + 10
	for _, t := range txt {
		if len(t) == 0 || len(t) > 255 {
			continue
		}
		if size+1+len(t) > maxAnnouncementBytes {
			break
		}
		size += 1 + len(t)
		kept = append(kept, t)
	}
	if len(kept) == 0 {
		// A TXT record must hold at least one string (RFC 6763 §6.1).
		kept = []string{""}
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, size), dnsmessage.Header{Response: true, Authoritative: true})
	b.EnableCompression()
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if err := b.PTRResource(dnsmessage.ResourceHeader{Name: svc, Class: dnsmessage.ClassINET, TTL: recordTTL},
		dnsmessage.PTRResource{PTR: inst}); err != nil {
		return nil, err
	}
	// The top bit of the class is mDNS's cache-flush bit: this TXT record replaces any
	// older one for the instance (RFC 6762 §10.2).
	if err := b.TXTResource(dnsmessage.ResourceHeader{Name: inst, Class: dnsmessage.ClassINET | 0x8000, TTL: recordTTL},
		dnsmessage.TXTResource{TXT: kept}); err != nil {
		return nil, err
	}
	return b.Finish()
}

// parsed is what one packet says about our service.
type parsed struct {
	query          bool
	asksForService bool
	instances      map[string][]string // instance label -> TXT strings
}

// parsePacket extracts from a DNS message whether it asks for serviceName and which
// instances of serviceName it describes (TXT records named <instance>.<serviceName>).
// It never keeps more than maxInstancesPerPkt instances of maxTXTPerInstance strings.
func parsePacket(pkt []byte, serviceName string) (parsed, error) {
	var out parsed
	var p dnsmessage.Parser
	h, err := p.Start(pkt)
	if err != nil {
		return out, err
	}
	out.query = !h.Response
	qs, err := p.AllQuestions()
	if err != nil {
		return out, err
	}
	if out.query {
		for _, q := range qs {
			if (q.Type == dnsmessage.TypePTR || q.Type == dnsmessage.TypeALL) && strings.EqualFold(q.Name.String(), serviceName) {
				out.asksForService = true
			}
		}
		return out, nil
	}
	suffix := "." + asciiLower(serviceName)
	readSection := func(next func() (dnsmessage.ResourceHeader, error), skip func() error) error {
		for {
			rh, err := next()
			if errors.Is(err, dnsmessage.ErrSectionDone) {
				return nil
			}
			if err != nil {
				return err
			}
			name := asciiLower(rh.Name.String())
			if rh.Type != dnsmessage.TypeTXT || !strings.HasSuffix(name, suffix) {
				if err := skip(); err != nil {
					return err
				}
				continue
			}
			txt, err := p.TXTResource()
			if err != nil {
				return err
			}
			label := rh.Name.String()[:len(name)-len(suffix)]
			if label == "" || strings.Contains(label, ".") {
				continue
			}
			if out.instances == nil {
				out.instances = make(map[string][]string)
			}
			if _, seen := out.instances[label]; !seen && len(out.instances) >= maxInstancesPerPkt {
				continue
			}
			strs := out.instances[label]
			for _, t := range txt.TXT {
				if len(strs) >= maxTXTPerInstance {
					break
				}
				strs = append(strs, t)
			}
			out.instances[label] = strs
		}
	}
	if err := readSection(p.AnswerHeader, p.SkipAnswer); err != nil {
		return out, err
	}
	if err := p.SkipAllAuthorities(); err != nil {
		return out, err
	}
	if err := readSection(p.AdditionalHeader, p.SkipAdditional); err != nil {
		return out, err
	}
	return out, nil
}

// asciiLower folds ASCII letters only: DNS compares names case-insensitively in ASCII (RFC
// 4343), and unlike strings.ToLower this keeps byte offsets, which parsePacket relies on.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
