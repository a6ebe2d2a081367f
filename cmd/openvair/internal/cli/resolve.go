package cli

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/openvair/openvair"
	"github.com/openvair/openvair/cmd/openvair/internal/exitcode"
)

// candidate is an entity a name may stand for.
type candidate struct {
	ID   uuid.UUID
	Name string
	// Where tells candidates with the same name apart ("storage pool1").
	Where string
}

// lister lists the candidates of one kind of entity.
type lister func(ctx context.Context) ([]candidate, error)

// minPrefix is the shortest id prefix accepted for an entity.
const minPrefix = 8

// notFound marks err as a not-found error (exit code 3).
func notFound(err error) error { return fmt.Errorf("%w: %w", openvair.ErrNotFound, err) }

// resolve turns an argument into an id: a full id is taken as is (without a listing); otherwise the
// entities are listed and the argument must be the name of exactly one of them, or else a unique prefix
// of at least 8 characters of one id. No match is a not-found error; several are a usage error that lists
// the candidates.
func resolve(ctx context.Context, kind, arg string, list lister) (uuid.UUID, error) {
	if id, err := uuid.Parse(arg); err == nil {
		return id, nil
	}
	all, err := list(ctx)
	if err != nil {
		return uuid.Nil, err
	}
	var byName []candidate
	for _, c := range all {
		if c.Name == arg {
			byName = append(byName, c)
		}
	}
	if len(byName) == 0 && len(arg) >= minPrefix {
		for _, c := range all {
			if strings.HasPrefix(c.ID.String(), strings.ToLower(arg)) {
				byName = append(byName, c)
			}
		}
	}
	switch len(byName) {
	case 0:
		return uuid.Nil, notFound(fmt.Errorf("no %s named %q", kind, arg))
	case 1:
		return byName[0].ID, nil
	}
	sort.Slice(byName, func(i, j int) bool { return byName[i].ID.String() < byName[j].ID.String() })
	names := make([]string, len(byName))
	for i, c := range byName {
		names[i] = c.ID.String()
		if c.Where != "" {
			names[i] += " (" + c.Where + ")"
		}
	}
	return uuid.Nil, exitcode.Usagef("%q names %d %ss, give an id: %s", arg, len(byName), kind, strings.Join(names, ", "))
}
