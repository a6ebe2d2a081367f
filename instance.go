package openvair

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"
)

// instance is this process's identity in operation records and leases. With a data directory it is stable
// across restarts (kept in <DataDir>/instance.id, locked while the process runs), so a restarted process
// recognises the operations it left running and fails them at once instead of waiting for their lease.
// Without one, or when another running process holds the data directory, it is a fresh UUID.
type instance struct {
	id   string
	lock *os.File
}

func openInstance(dataDir string) (*instance, error) {
	if dataDir == "" {
		return &instance{id: uuid.NewString()}, nil
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path := filepath.Join(dataDir, "instance.id")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("instance id: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return &instance{id: uuid.NewString()}, nil // another live process uses this data directory
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("instance id: %w", err)
	}
	id := strings.TrimSpace(string(raw))
	if _, perr := uuid.Parse(id); perr != nil {
		id = uuid.NewString()
		err := f.Truncate(0)
		if err == nil {
			_, err = f.WriteAt([]byte(id+"\n"), 0)
		}
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return &instance{id: id, lock: f}, nil
}

// close releases the identity for the next process.
func (i *instance) close() error {
	if i == nil || i.lock == nil {
		return nil
	}
	return i.lock.Close()
}
