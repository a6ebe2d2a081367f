package cloudinit

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/openvair/openvair/internal/errkind"
)

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// metaOf parses the meta-data of a seed.
func metaOf(t *testing.T, files map[string][]byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, yaml.Unmarshal(files[FileMetaData], &m), "%s", files[FileMetaData])
	return m
}

func TestSeed(t *testing.T) {
	const userData = "#cloud-config\n# keep me\npackages: [nginx]\nssh_authorized_keys: [\"ssh-ed25519 AAAA other\"]\n"
	const network = "network:\n  version: 2\n  ethernets:\n    eth0: {dhcp4: true}\n"

	tests := []struct {
		name      string
		cfg       Config
		wantUser  string
		wantMeta  map[string]any
		wantNet   string // "" for no network-config file
		wantMetaS []string
	}{
		{
			name:     "empty config",
			cfg:      Config{},
			wantUser: "#cloud-config\n",
			wantMeta: map[string]any{"instance-id": "vm-1"},
		},
		{
			name:     "everything",
			cfg:      Config{UserData: userData, NetworkConfig: network, SSHAuthorizedKeys: []string{keyEd25519, " " + keyRSA2048 + "\t"}, Hostname: "web-1"},
			wantUser: userData,
			wantMeta: map[string]any{"instance-id": "vm-1", "local-hostname": "web-1", "public-keys": []any{keyEd25519, keyRSA2048}},
			wantNet:  network,
			wantMetaS: []string{
				"instance-id: \"vm-1\"\n", "local-hostname: \"web-1\"\n", "public-keys:\n  - \"" + keyEd25519 + "\"\n",
			},
		},
		{
			name:     "script untouched, keys and hostname in meta-data",
			cfg:      Config{UserData: "#!/bin/sh\necho hi\n", SSHAuthorizedKeys: []string{keyECDSA256}, Hostname: "db.example.com"},
			wantUser: "#!/bin/sh\necho hi\n",
			wantMeta: map[string]any{"instance-id": "vm-1", "local-hostname": "db.example.com", "public-keys": []any{keyECDSA256}},
		},
		{
			name: "meta_data instance-id kept, keys appended to its list, comments and plain values kept",
			cfg: Config{MetaData: "# site meta\ninstance-id: custom-7 # pinned\npublic-keys:\n  - " + keyRSA2048 + "\nflag: yes\n",
				SSHAuthorizedKeys: []string{keyEd25519}, Hostname: "no"},
			wantUser:  "#cloud-config\n",
			wantMeta:  map[string]any{"instance-id": "custom-7", "local-hostname": "no", "flag": "yes", "public-keys": []any{keyRSA2048, keyEd25519}},
			wantMetaS: []string{"# site meta\n", "instance-id: custom-7 # pinned\n", "flag: yes\n", "local-hostname: \"no\"\n"},
		},
		{
			name:     "meta_data public-keys string becomes a list",
			cfg:      Config{MetaData: "public-keys: |\n  " + keyRSA2048 + "\n  " + keyECDSA384 + "\n", SSHAuthorizedKeys: []string{keyEd25519}},
			wantUser: "#cloud-config\n",
			wantMeta: map[string]any{"instance-id": "vm-1", "public-keys": []any{keyRSA2048, keyECDSA384, keyEd25519}},
		},
		{
			name:     "meta_data null public-keys",
			cfg:      Config{MetaData: "public-keys:\n", SSHAuthorizedKeys: []string{keyEd25519}},
			wantUser: "#cloud-config\n",
			wantMeta: map[string]any{"instance-id": "vm-1", "public-keys": []any{keyEd25519}},
		},
		{
			name:     "meta_data local-hostname equal to hostname",
			cfg:      Config{MetaData: "local-hostname: web\n", Hostname: "web"},
			wantUser: "#cloud-config\n",
			wantMeta: map[string]any{"instance-id": "vm-1", "local-hostname": "web"},
		},
		{
			name:     "meta_data only comments",
			cfg:      Config{MetaData: "# nothing here\n", Hostname: "0x1f"},
			wantUser: "#cloud-config\n",
			wantMeta: map[string]any{"instance-id": "vm-1", "local-hostname": "0x1f"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, err := tt.cfg.Seed("vm-1")
			require.NoError(t, err)
			want := []string{FileMetaData, FileUserData}
			if tt.wantNet != "" {
				want = []string{FileMetaData, FileNetworkConfig, FileUserData}
				assert.Equal(t, tt.wantNet, string(files[FileNetworkConfig]))
			}
			assert.Equal(t, want, sortedKeys(files))
			assert.Equal(t, tt.wantUser, string(files[FileUserData]))
			assert.Equal(t, tt.wantMeta, metaOf(t, files))
			for _, s := range tt.wantMetaS {
				assert.Contains(t, string(files[FileMetaData]), s)
			}
			assert.True(t, strings.HasPrefix(string(files[FileMetaData]), "instance-id:") || strings.HasPrefix(string(files[FileMetaData]), "#"),
				"instance-id comes first:\n%s", files[FileMetaData])

			again, err := tt.cfg.Seed("vm-1")
			require.NoError(t, err)
			assert.Equal(t, files, again, "the seed is deterministic")
		})
	}
}

func TestSeedMetaDataExact(t *testing.T) {
	files, err := Config{SSHAuthorizedKeys: []string{keyEd25519}, Hostname: "web-1"}.Seed("2f1c7c2e-9d7b-4d43-8a8f-6c1d2f0b9e11")
	require.NoError(t, err)
	assert.Equal(t, "instance-id: \"2f1c7c2e-9d7b-4d43-8a8f-6c1d2f0b9e11\"\n"+
		"local-hostname: \"web-1\"\n"+
		"public-keys:\n"+
		"  - \""+keyEd25519+"\"\n", string(files[FileMetaData]))
}

func TestSeedRefuses(t *testing.T) {
	_, err := Config{Hostname: "-bad"}.Seed("vm-1")
	assert.Equal(t, []string{"cloud_init.hostname"}, sortedKeys(fieldErrors(t, err)))

	_, err = Config{}.Seed(" ")
	require.ErrorIs(t, err, errkind.Invalid)
	assert.Contains(t, err.Error(), "instance id")
}
