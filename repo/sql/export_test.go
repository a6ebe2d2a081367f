package sqlstore

import "github.com/uptrace/bun"

// DBOf returns the bun handle units of work run on, for this package's tests that need raw access; bun stays
// out of the public API.
func DBOf(s *Store) *bun.DB { return s.db }
