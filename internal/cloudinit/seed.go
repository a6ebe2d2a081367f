package cloudinit

import (
	"bytes"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/openvair/openvair/internal/errkind"
)

// The names of the seed's files, as cloud-init's NoCloud datasource reads them.
const (
	// FileUserData is the user-data file: the caller's user_data.
	FileUserData = "user-data"
	// FileMetaData is the meta-data file: instance-id, local-hostname, public-keys and the caller's
	// meta_data.
	FileMetaData = "meta-data"
	// FileNetworkConfig is the network-config file, present when network_config is given.
	FileNetworkConfig = "network-config"
)

// emptyUserData is written when user_data is empty: NoCloud requires a user-data file, and this one is an
// explicit empty cloud-config.
const emptyUserData = cloudConfigHeader + "\n"

// Seed validates c and returns the files of its NoCloud seed, by name: FileUserData (user_data unchanged,
// or an empty cloud-config), FileMetaData, and FileNetworkConfig when network_config is given (unchanged).
//
// instanceID becomes meta-data's instance-id unless meta_data has one. Pass the VM's id: cloud-init runs
// its per-instance modules again whenever the instance id changes, so it must stay the same across rebuilds
// of the seed. Errors are Validate's, or errkind.Invalid for an empty instanceID.
func (c Config) Seed(instanceID string) (map[string][]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if strings.TrimSpace(instanceID) == "" {
		return nil, errkind.New(errkind.Invalid, "vm", "", "a cloud-init seed needs an instance id")
	}
	meta, err := c.metaData(instanceID)
	if err != nil {
		return nil, err
	}
	userData := c.UserData
	if userData == "" {
		userData = emptyUserData
	}
	files := map[string][]byte{FileUserData: []byte(userData), FileMetaData: meta}
	if c.NetworkConfig != "" {
		files[FileNetworkConfig] = []byte(c.NetworkConfig)
	}
	return files, nil
}

// metaData returns the seed's meta-data: meta_data (validated) with instance-id, local-hostname and the
// keys filled in. meta_data's comments and styles are kept; the values the SDK adds are double-quoted.
func (c Config) metaData(instanceID string) ([]byte, error) {
	doc, root, _ := parseMapping(c.MetaData)
	if root == nil {
		root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		doc = &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}
	}
	if lookup(root, "instance-id") == nil {
		root.Content = append([]*yaml.Node{plainKey("instance-id"), quoted(instanceID)}, root.Content...)
	}
	if c.Hostname != "" && lookup(root, "local-hostname") == nil {
		root.Content = append(root.Content, plainKey("local-hostname"), quoted(c.Hostname))
	}
	if len(c.SSHAuthorizedKeys) > 0 {
		mergeKeys(root, c.SSHAuthorizedKeys)
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, errkind.Wrap(errkind.Invalid, err, "vm", "", "cannot write the cloud-init meta-data")
	}
	if err := enc.Close(); err != nil {
		return nil, errkind.Wrap(errkind.Invalid, err, "vm", "", "cannot write the cloud-init meta-data")
	}
	return b.Bytes(), nil
}

// mergeKeys appends keys to root's public-keys: a new list when there is none (or it is null), the same
// list when it is one, and a list of the string's lines followed by keys when it is a string (cloud-init
// reads a string as one key per line). checkMetaData has refused the other forms.
func mergeKeys(root *yaml.Node, keys []string) {
	added := make([]*yaml.Node, len(keys))
	for i, k := range keys {
		added[i] = quoted(strings.TrimSpace(k))
	}
	pk := lookup(root, "public-keys")
	switch {
	case pk == nil:
		root.Content = append(root.Content, plainKey("public-keys"), &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: added})
	case pk.Kind == yaml.SequenceNode:
		pk.Content = append(pk.Content, added...)
	case pk.Kind == yaml.ScalarNode:
		var lines []*yaml.Node
		if !isNull(pk) {
			for _, l := range strings.Split(pk.Value, "\n") {
				if l = strings.TrimSpace(l); l != "" {
					lines = append(lines, quoted(l))
				}
			}
		}
		*pk = yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: pk.Line, Column: pk.Column,
			HeadComment: pk.HeadComment, LineComment: pk.LineComment, FootComment: pk.FootComment,
			Content: append(lines, added...)}
	}
}
