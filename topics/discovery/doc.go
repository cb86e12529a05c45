// Package discovery finds other nodes that share this node's topics without revealing any
// topic to a node that does not already hold it.
//
// A session is a private set intersection over a stream on /lfnet/<net>/discovery/1. The
// initiator sends a fresh salt; the acceptor answers with its own salt and one token per
// topic it holds, token = blake3 keyed by Derive(topic, "discovery") over both salts and the
// role byte 1. The initiator computes the same for its topics and keeps the matches: the
// common topics. It answers with its role-0 tokens of the common topics only, so the
// acceptor learns the same set and nothing about the initiator's other topics. Both then
// send signed peer records: their own, those of nodes they know to share a common topic
// (tagged with that topic's token of this session), and a small random sample of other
// known nodes (untagged) so that random walks can cross nodes that share nothing. Tokens are
// salted per session, so nothing repeats across sessions and a token reveals nothing to a
// node without the topic.
//
// A node that holds no topics (lfnode) still answers sessions: it finds nothing in common
// and shares only that sample, which makes it a step of other nodes' walks. Two nodes that
// know nothing but the same lfnode learn each other's records from it, and then find their
// common topics in a session with each other; lfnode never learns a topic.
//
// Random walks (two by default) keep discovery going in the background: each step contacts
// a node the previous session returned, or with a small probability (and whenever there is
// nothing to continue with) a bootstrap or other known node. Results land in the host's
// address book: node -> common topics and its signed record. The walks step every 10 s
// while they learn something, and slow down to every 80 s while rounds change nothing in
// the address book (Config.StepIntervalMax): in a network whose membership is stable they
// were the largest background traffic. A failed session, a new topic or an overlay asking
// for contacts brings them back to full speed.
//
// The decision logic (which node to contact next, backoff after failures) is the pure
// Walker, with injected clock and randomness; Service runs it on real streams.
package discovery
