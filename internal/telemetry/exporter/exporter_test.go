package exporter

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSetupConfig: the exporters Setup knows, and its refusals.
func TestSetupConfig(t *testing.T) {
	var out bytes.Buffer
	tel, shutdown, err := Setup(t.Context(), Config{Tracing: "stdout", Stdout: &out})
	require.NoError(t, err)
	require.NotNil(t, tel.TracerProvider)
	_, span := tel.TracerProvider.Tracer("t").Start(t.Context(), "hello")
	span.End()
	require.NoError(t, shutdown(t.Context()))
	assert.Contains(t, out.String(), `"hello"`)

	tel, shutdown, err = Setup(t.Context(), Config{})
	require.NoError(t, err)
	assert.Nil(t, tel.TracerProvider, "tracing is off by default")
	require.NoError(t, shutdown(t.Context()))

	_, _, err = Setup(t.Context(), Config{Tracing: "zipkin"})
	require.Error(t, err)
	_, _, err = Setup(t.Context(), Config{Tracing: "otlp", OTLPEndpoint: "ftp://x"})
	require.Error(t, err)
	for _, ep := range []string{"", "collector:4318", "http://collector:4318", "https://collector/custom/path"} {
		_, shutdown, err := Setup(t.Context(), Config{Tracing: "otlp", OTLPEndpoint: ep})
		require.NoError(t, err, ep)
		require.NoError(t, shutdown(t.Context()))
	}
}
