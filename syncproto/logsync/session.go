package logsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/lfnet/lfnet/internal/fifo"
	"github.com/lfnet/lfnet/syncproto"
)

const (
	// liveFrameBuffer is the largest frame buffer a live session keeps between operations.
	liveFrameBuffer = 64 << 10
	// seenLimit bounds the per-session set of operation ids that crossed the link; when
	// full it starts over, which can only cost a duplicate send that the peer ignores.
	seenLimit = 1 << 16
)

// ErrLagged: a live session fell further behind than its queue allows and was closed; the
// coordinator re-syncs it.
var ErrLagged = errors.New("logsync: live session lagged")

// session is one log sync session with one peer; Run drives it.
type session struct {
	m    *Manager
	info syncproto.SessionInfo

	live   *liveQueue // what to send once in live mode, in order
	cancel context.CancelCauseFunc
	// remoteDone is closed when the remote closed its side in live mode (see Run).
	remoteDone chan struct{}

	seenMu sync.Mutex
	seen   map[Hash]linkMark // what crossed this link, per operation

	itemsSent, bytesSent atomic.Uint64
	itemsRecv, bytesRecv atomic.Uint64

	wbuf []byte // the frame being sent; only send's goroutine uses it
}

func newSession(m *Manager, info syncproto.SessionInfo) *session {
	s := &session{m: m, info: info, seen: make(map[Hash]linkMark)}
	if info.Live {
		s.live = newLiveQueue(m.liveQueue)
	}
	return s
}

// liveItem is one thing for a live session to send: an operation in full (Live), an id to
// announce, a graft or a prune.
type liveItem struct {
	entry Entry // kindLive
	id    Hash  // kindAnnounce and kindGraft: an operation id; kindPrune: an author's key
	kind  uint8 // kindLive, kindAnnounce, kindGraft or kindPrune
	// answer marks an operation sent because the peer grafted it: it goes even though
	// its id already crossed the link (we announced it).
	answer bool
}

// liveQueue is a live session's send queue: FIFO, bounded, and holding memory only for
// what it holds. (A channel of the bound's capacity cost 230 KiB per idle live session:
// 23 MB for an idle node with 100 topics.)
type liveQueue struct {
	mu     sync.Mutex
	items  fifo.Queue[liveItem]
	max    int
	signal chan struct{} // has a value when items were added since the last wait
}

func newLiveQueue(max int) *liveQueue {
	return &liveQueue{max: max, signal: make(chan struct{}, 1)}
}

// push adds it unless the queue is full.
func (q *liveQueue) push(it liveItem) bool {
	q.mu.Lock()
	if q.items.Len() >= q.max {
		q.mu.Unlock()
		return false
	}
	q.items.Push(it)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
	return true
}

// pop takes the oldest item, or reports false when the queue is empty.
func (q *liveQueue) pop() (liveItem, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.items.Pop()
}

func (q *liveQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.items.Len()
}

// linkMark records what of an operation crossed a link.
type linkMark uint8

const (
	markCrossed  linkMark = 1 << iota // sent, received or announced either way
	markAnswered                      // sent in answer to a graft
)

// markSeen records that op crossed this link and reports whether it had already.
func (s *session) markSeen(h Hash) (already bool) { return s.mark(h, markCrossed) }

// markAnswered records that op was sent to answer a graft and reports whether it had been
// already: each operation answers at most one graft per link, so that a peer cannot make
// this node send a body again and again by asking for it.
func (s *session) markAnswered(h Hash) (already bool) { return s.mark(h, markAnswered) }

func (s *session) mark(h Hash, m linkMark) (already bool) {
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	old, ok := s.seen[h]
	if old&m != 0 {
		return true
	}
	if !ok && len(s.seen) >= seenLimit {
		clear(s.seen)
	}
	s.seen[h] = old | m
	return false
}

// enqueue queues something to send in the live phase without ever blocking the publisher.
func (s *session) enqueue(it liveItem) {
	if !s.live.push(it) {
		s.cancel(ErrLagged)
	}
}

func (s *session) metrics() syncproto.Metrics {
	return syncproto.Metrics{
		ItemsSent: s.itemsSent.Load(), BytesSent: s.bytesSent.Load(),
		ItemsReceived: s.itemsRecv.Load(), BytesReceived: s.bytesRecv.Load(),
	}
}

// Run implements syncproto.Protocol: both directions run concurrently, each sending what
// the other lacks according to its Have, and in live mode the session then stays open.
func (s *session) Run(parent context.Context, conn syncproto.Conn, emit func(syncproto.Event)) error {
	ctx, cancel := context.WithCancelCause(parent)
	s.cancel = cancel
	defer cancel(nil)
	// Blocked reads and writes must end when either direction fails.
	stop := context.AfterFunc(ctx, func() { _ = conn.Reset() })
	defer stop()
	s.remoteDone = make(chan struct{})
	if s.info.Live {
		// Registered before our Have is computed, so nothing stored meanwhile is missed:
		// it is either below the announced heights or in the live queue (or both; the
		// seen set drops the duplicate).
		s.m.register(s)
		defer s.m.unregister(s)
	}
	remoteHave := make(chan map[LogRef]uint64, 1)
	errs := make(chan error, 2)
	go func() { errs <- s.send(ctx, conn, remoteHave) }()
	go func() { errs <- s.receive(ctx, conn, remoteHave, emit) }()
	failed := false
	for range 2 {
		if err := <-errs; err != nil {
			failed = true
			cancel(err) // the first cause wins; later calls are no-ops
		}
	}
	cause := context.Cause(ctx)
	if !failed && s.remoteClosed() {
		// The remote closed its side after catching up (it does not run the topic live)
		// and our catch-up is out: close ours, so that it sees the end rather than a reset.
		if err := conn.CloseWrite(); err != nil {
			return fmt.Errorf("logsync: close write: %w", err)
		}
		return nil
	}
	switch {
	case !failed && cause == nil:
		return nil
	case parent.Err() != nil:
		return nil // stopped from outside: neighbour gone or topic closed
	default:
		return cause
	}
}

// drain ends the reading direction of a session that is not live: it reads until the
// remote closes its side. A remote in live mode (a node we probe, which runs the topic
// live, or a neighbour that does while we do not) may push live frames until it sees our
// side close; they are dropped. Anything else after Done breaks the protocol.
func (s *session) drain(conn syncproto.Conn) error {
	for {
		kind, _, err := s.read(conn)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		}
		switch kind {
		case kindLive, kindChunk, kindAnnounce, kindGraft, kindPrune:
		default:
			return fmt.Errorf("%w: kind %d after done", ErrProtocol, kind)
		}
	}
}

// remoteClosed reports whether the remote closed its side in live mode (see Run).
func (s *session) remoteClosed() bool {
	select {
	case <-s.remoteDone:
		return true
	default:
		return false
	}
}

func (s *session) writeMsg(conn syncproto.Conn, kind uint64, msg any) error {
	b, err := encodeMessage(kind, msg)
	if err != nil {
		return err
	}
	return s.writeFrame(conn, b)
}

func (s *session) writeFrame(conn syncproto.Conn, frame []byte) error {
	if err := conn.WriteFrame(frame); err != nil {
		return fmt.Errorf("logsync: send to %s: %w", s.info.Remote, err)
	}
	return nil
}

func (s *session) flush(conn syncproto.Conn) error {
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("logsync: send to %s: %w", s.info.Remote, err)
	}
	return nil
}

// send is the writing direction: Have, PreSync, operations, Done, then live operations.
func (s *session) send(ctx context.Context, conn syncproto.Conn, remoteHave <-chan map[LogRef]uint64) error {
	byAuthor, err := s.m.store.Resolve(ctx, s.m.topic)
	if err != nil {
		return fmt.Errorf("logsync: resolve topic: %w", err)
	}
	var logs []LogRef
	for author, ids := range byAuthor {
		for _, id := range ids {
			logs = append(logs, LogRef{Author: author, LogID: id})
		}
	}
	heights, err := s.m.store.Heights(ctx, logs)
	if err != nil {
		return fmt.Errorf("logsync: heights: %w", err)
	}
	have := haveMsg{Logs: make([]haveEntry, 0, len(heights))}
	for ref, h := range heights {
		have.Logs = append(have.Logs, haveEntry{Author: ref.Author[:], LogID: ref.LogID, Height: h})
	}
	if len(have.Logs) > maxHaveEntries {
		return fmt.Errorf("logsync: topic has %d logs, more than one session can announce (%d)", len(have.Logs), maxHaveEntries)
	}
	if err := s.writeMsg(conn, kindHave, have); err != nil {
		return err
	}
	// The remote answers only once it has our Have.
	if err := s.flush(conn); err != nil {
		return err
	}

	var theirs map[LogRef]uint64
	select {
	case theirs = <-remoteHave:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	type plan struct {
		log         LogRef
		after, upto uint64
	}
	var plans []plan
	var total preSyncMsg
	for ref, h := range heights {
		if h <= theirs[ref] {
			continue
		}
		count, size, err := s.m.store.RangeSize(ctx, ref, theirs[ref], h)
		if err != nil {
			return fmt.Errorf("logsync: range size of %s: %w", ref, err)
		}
		if count > 0 {
			plans = append(plans, plan{ref, theirs[ref], h})
			total.Ops += count
			total.Bytes += size
		}
	}
	if err := s.writeMsg(conn, kindPreSync, total); err != nil {
		return err
	}
	for _, p := range plans {
		err := s.m.store.Range(ctx, p.log, p.after, p.upto, func(op *Operation) error {
			// In live mode the seen set also covers catch-up, so that a live push
			// of the same operation does not cross the link again.
			if s.info.Live && s.markSeen(op.Hash()) {
				return nil
			}
			return s.sendOp(conn, kindOp, Entry{Op: op, LogID: p.log.LogID})
		})
		if err != nil {
			return err
		}
	}
	if err := s.writeMsg(conn, kindDone, doneMsg{}); err != nil {
		return err
	}
	if !s.info.Live {
		if err := conn.CloseWrite(); err != nil {
			return fmt.Errorf("logsync: close write: %w", err)
		}
		return nil
	}
	if err := s.flush(conn); err != nil {
		return err
	}
	return s.sendLive(ctx, conn)
}

// sendLive is the live phase of the writing direction. Announcements queued back to back
// share a frame, and everything queued back to back shares the transport write: the frame
// buffer is flushed only when the queue runs dry.
func (s *session) sendLive(ctx context.Context, conn syncproto.Conn) error {
	var announce []Hash
	writeAnnounce := func() error {
		if len(announce) == 0 {
			return nil
		}
		err := s.writeIDs(conn, kindAnnounce, announce)
		announce = announce[:0]
		return err
	}
	for {
		if s.remoteClosed() {
			return nil // the remote reads no more live data
		}
		it, ok := s.live.pop()
		if !ok {
			select {
			case <-s.live.signal:
				continue
			case <-s.remoteDone:
				return nil
			case <-ctx.Done():
				return nil
			}
		}
		var err error
		switch it.kind {
		case kindAnnounce:
			if !s.markSeen(it.id) {
				announce = append(announce, it.id)
			}
			if len(announce) == maxFrameIDs {
				err = writeAnnounce()
			}
		case kindLive:
			if err = writeAnnounce(); err == nil && (it.answer || !s.markSeen(it.entry.Op.Hash())) {
				err = s.sendOp(conn, kindLive, it.entry)
			}
		case kindGraft:
			if err = writeAnnounce(); err == nil {
				err = s.writeIDs(conn, kindGraft, []Hash{it.id})
			}
		case kindPrune:
			if err = writeAnnounce(); err == nil {
				err = s.writeIDs(conn, kindPrune, []Hash{it.id})
			}
		}
		if err != nil {
			return err
		}
		if s.live.len() > 0 {
			continue
		}
		if err := writeAnnounce(); err != nil {
			return err
		}
		if err := s.flush(conn); err != nil {
			return err
		}
		if cap(s.wbuf) > liveFrameBuffer {
			s.wbuf = nil // a large body passed; do not hold its frame for the session's life
		}
	}
}

func (s *session) writeIDs(conn syncproto.Conn, kind uint64, ids []Hash) error {
	msg := idsMsg{IDs: make([][]byte, len(ids))}
	for i := range ids {
		msg.IDs[i] = ids[i][:]
	}
	return s.writeMsg(conn, kind, msg)
}

// sendOp sends one operation with its body in chunks.
func (s *session) sendOp(conn syncproto.Conn, kind uint64, e Entry) error {
	body := e.Op.Body
	first := body[:min(len(body), chunkSize)]
	s.wbuf = appendOpMsg(s.wbuf[:0], kind, e.LogID, e.Op.HeaderBytes(), uint64(len(body)), first)
	if err := s.writeFrame(conn, s.wbuf); err != nil {
		return err
	}
	for rest := body[len(first):]; len(rest) > 0; {
		n := min(len(rest), chunkSize)
		s.wbuf = appendChunkMsg(s.wbuf[:0], rest[:n])
		if err := s.writeFrame(conn, s.wbuf); err != nil {
			return err
		}
		rest = rest[n:]
	}
	s.itemsSent.Add(1)
	s.bytesSent.Add(e.Op.encodedSize())
	return nil
}

// alreadyHave reports whether a live operation is one this node stored before, and if so
// tells the broadcast tree (which prunes the link). Recognising a duplicate by hash (a
// blake3 of the header, about a microsecond) skips its signature check, which costs about
// 50 µs. A duplicate is still marked seen on this link, so it is never pushed back, and
// counted as received. Its bytes are not trusted for anything.
func (s *session) alreadyHave(ctx context.Context, op rawOp) (bool, error) {
	id := HashOf(op.header)
	s.markSeen(id)
	has, err := s.m.store.Has(ctx, id)
	if err != nil {
		return false, fmt.Errorf("logsync: look up received operation %s: %w", id, err)
	}
	if has {
		s.itemsRecv.Add(1)
		s.bytesRecv.Add(uint64(len(op.header) + len(op.body)))
		if author, ok := storedAuthor(op.header); ok {
			s.m.duplicate(s, author, id)
		}
	}
	return has, nil
}

// storedAuthor reads the author of a header this node stores byte for byte (found by its
// hash), so it is known to be well formed.
func storedAuthor(header []byte) (PublicKey, bool) {
	var author PublicKey
	p := headerParser{data: header}
	if major, _, err := p.head(); err != nil || major != 4 {
		return author, false
	}
	if _, err := p.uint("version"); err != nil {
		return author, false
	}
	return author, p.bytes("public key", author[:]) == nil
}

// rawOp is an operation as received, before verification.
type rawOp struct {
	logID        uint64
	header, body []byte
	entry        []byte // header and body inside a BoltStore entry layout, id not yet set
}

// receive is the reading direction: it routes the remote's Have to send and feeds
// operations through verification into the store.
func (s *session) receive(ctx context.Context, conn syncproto.Conn, remoteHave chan<- map[LogRef]uint64, emit func(syncproto.Event)) error {
	kind, msg, err := s.read(conn)
	if err != nil {
		return err
	}
	if kind != kindHave {
		return fmt.Errorf("%w: expected have, got kind %d", ErrProtocol, kind)
	}
	theirs := make(map[LogRef]uint64, len(msg.(haveMsg).Logs))
	for _, e := range msg.(haveMsg).Logs {
		theirs[LogRef{Author: PublicKey(e.Author), LogID: e.LogID}] = e.Height
	}
	remoteHave <- theirs

	kind, msg, err = s.read(conn)
	if err != nil {
		return err
	}
	if kind != kindPreSync {
		return fmt.Errorf("%w: expected presync, got kind %d", ErrProtocol, kind)
	}
	announced := msg.(preSyncMsg)
	emit(syncproto.Event{Kind: syncproto.SyncStarted, Expected: syncproto.Metrics{ItemsReceived: announced.Ops, BytesReceived: announced.Bytes}})

	in := newIngester(ctx, s, emit)
	defer in.close()
	var batch []rawOp
	var batchSize int
	var got preSyncMsg
	for {
		kind, msg, err := s.read(conn)
		if err != nil {
			return err
		}
		if kind == kindDone {
			break
		}
		if kind != kindOp {
			return fmt.Errorf("%w: expected op or done, got kind %d", ErrProtocol, kind)
		}
		op, err := s.readOp(conn, msg.(opMsg))
		if err != nil {
			return err
		}
		got.Ops++
		got.Bytes += uint64(len(op.header) + len(op.body))
		if got.Ops > announced.Ops || got.Bytes > announced.Bytes {
			return fmt.Errorf("%w: more than the announced %d operations / %d bytes", ErrProtocol, announced.Ops, announced.Bytes)
		}
		batch = append(batch, op)
		batchSize += len(op.header) + len(op.body)
		if len(batch) >= verifyBatchOps || batchSize >= verifyBatchBytes {
			if err := in.submit(ctx, batch, false); err != nil {
				return err
			}
			batch, batchSize = nil, 0
		}
	}
	if err := in.submit(ctx, batch, false); err != nil {
		return err
	}
	if err := in.flush(ctx); err != nil {
		return err
	}
	emit(syncproto.Event{Kind: syncproto.SyncFinished, Metrics: s.metrics()})

	if !s.info.Live {
		return s.drain(conn)
	}
	emit(syncproto.Event{Kind: syncproto.LiveModeStarted})
	for {
		kind, msg, err := s.read(conn)
		if errors.Is(err, io.EOF) {
			// A normal end: the remote is done. Our writing direction finishes its
			// catch-up, which the remote still reads, and then stops (sendLive).
			close(s.remoteDone)
			return nil
		}
		if err != nil {
			return err
		}
		switch kind {
		case kindLive:
			op, err := s.readOp(conn, msg.(opMsg))
			if err != nil {
				return err
			}
			known, err := s.alreadyHave(ctx, op)
			if err != nil {
				return err
			}
			if !known {
				if err := in.submit(ctx, []rawOp{op}, true); err != nil {
					return err
				}
			}
		case kindAnnounce:
			if err := s.m.announced(ctx, s, msg.(idsMsg).hashes()); err != nil {
				return err
			}
		case kindGraft:
			s.m.grafted(s, msg.(idsMsg).hashes())
		case kindPrune:
			s.m.pruned(s, msg.(idsMsg).authors())
		default:
			return fmt.Errorf("%w: expected a live message, got kind %d", ErrProtocol, kind)
		}
	}
}

func (s *session) read(conn syncproto.Conn) (uint64, any, error) {
	frame, err := conn.ReadFrame()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, io.EOF
		}
		return 0, nil, fmt.Errorf("logsync: receive from %s: %w", s.info.Remote, err)
	}
	return decodeMessage(frame)
}

// readOp completes an operation from its first frame and the chunks that follow. m aliases
// the connection's frame buffer, so it is copied out before the next read: header and body
// go into one buffer of their final size, which the operation then keeps (decodeOwned).
func (s *session) readOp(conn syncproto.Conn, m opMsg) (rawOp, error) {
	if m.BodySize > s.m.maxBody {
		return rawOp{}, fmt.Errorf("%w: body of %d bytes, limit %d", ErrProtocol, m.BodySize, s.m.maxBody)
	}
	hlen := len(m.Header)
	buf, prefix := newEntryBuffer(hlen, m.BodySize)
	copy(buf[prefix:], m.Header)
	header := buf[prefix : prefix+hlen : prefix+hlen]
	body := append(buf[prefix+hlen:], m.Body...)
	for uint64(len(body)) < m.BodySize {
		kind, msg, err := s.read(conn)
		if errors.Is(err, io.EOF) {
			return rawOp{}, fmt.Errorf("%w: stream ended inside a body", ErrProtocol)
		}
		if err != nil {
			return rawOp{}, err
		}
		if kind != kindChunk {
			return rawOp{}, fmt.Errorf("%w: expected chunk, got kind %d", ErrProtocol, kind)
		}
		data := msg.(chunkMsg).Data
		if uint64(len(body)+len(data)) > m.BodySize {
			return rawOp{}, fmt.Errorf("%w: body longer than announced", ErrProtocol)
		}
		body = append(body, data...)
	}
	entry := buf[:prefix+hlen+len(body)]
	if m.BodySize == 0 {
		body = nil // no payload: decoded as header only, as before
	}
	return rawOp{logID: m.LogID, header: header, body: body, entry: entry}, nil
}
