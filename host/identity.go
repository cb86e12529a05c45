package host

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/libp2p/go-libp2p/core/crypto"
	pb "github.com/libp2p/go-libp2p/core/crypto/pb"
)

// KeyFileName is the name of the identity key file inside the data directory.
const KeyFileName = "node.key"

// Errors about the identity key file.
var (
	// ErrKeyPermissions: the key file is readable or writable by users other than its owner.
	ErrKeyPermissions = errors.New("host: key file permissions too open")
	// ErrKeyType: the key (file or libp2p.Identity option) is not an ed25519 private key.
	ErrKeyType = errors.New("host: identity key is not ed25519")
	// ErrKeyFile: the key file cannot be read, written or decoded.
	ErrKeyFile = errors.New("host: key file")
)

// maxKeyFileSize bounds how much of a key file is read; a marshalled ed25519 key is 68 bytes.
const maxKeyFileSize = 4096

// LoadOrCreateKey returns the ed25519 identity stored in dir/node.key, creating the key (mode
// 0600) if the file does not exist. It refuses a file other users may access and a key of
// another type, because silently using either would weaken or change the node's identity.
func LoadOrCreateKey(dir string) (crypto.PrivKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: create data directory: %v", ErrKeyFile, err)
	}
	path := filepath.Join(dir, KeyFileName)
	key, err := loadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	key, _, err = crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("%w: generate key: %v", ErrKeyFile, err)
	}
	if err := writeKey(path, key); err != nil {
		return nil, err
	}
	return key, nil
}

func loadKey(path string) (crypto.PrivKey, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	// Windows has no POSIX permission bits to check; ACLs there are the user's business.
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v, want 0600", ErrKeyPermissions, path, info.Mode().Perm())
	}
	if info.Size() > maxKeyFileSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, too large for a key", ErrKeyFile, path, info.Size())
	}
	data := make([]byte, info.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("%w: read %s: %v", ErrKeyFile, path, err)
	}
	key, err := crypto.UnmarshalPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w: decode %s: %v", ErrKeyFile, path, err)
	}
	if err := checkKeyType(key); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// writeKey stores the key through a temporary file and a rename, so that a crash never
// leaves a half-written key under the real name.
func writeKey(path string, key crypto.PrivKey) error {
	data, err := crypto.MarshalPrivateKey(key)
	if err != nil {
		return fmt.Errorf("%w: encode key: %v", ErrKeyFile, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), KeyFileName+".tmp*")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // no-op after a successful rename
	// CreateTemp already uses 0600; Chmod makes that explicit and independent of umask.
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		tmp.Close()
		return fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: write key: %v", ErrKeyFile, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: sync key: %v", ErrKeyFile, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	return nil
}

func checkKeyType(key crypto.PrivKey) error {
	if key.Type() != pb.KeyType_Ed25519 {
		return fmt.Errorf("%w: got %v", ErrKeyType, key.Type())
	}
	return nil
}
