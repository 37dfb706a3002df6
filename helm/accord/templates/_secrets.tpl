{{/*
Which librdkafka properties hold secrets (issue 12): every property librdkafka itself
marks sensitive (rdkafka_conf.c, _RK_SENSITIVE) and that holds a secret rather than a
file path: ssl.key.pem, ssl.key.password, ssl.keystore.password, ssl_key,
sasl.username, sasl.password, sasl.oauthbearer.config, sasl.oauthbearer.client.secret,
sasl.oauthbearer.client.credentials.client.secret,
sasl.oauthbearer.assertion.private.key.pem and .passphrase; and, whatever librdkafka
adds later, any name with password, secret, passphrase or credential in it. Such a
value must be written ${NAME} and come from a Secret through `env`. (ssl.ca.pem is
marked sensitive too, but a CA certificate is public; *.location and *.file name files,
which a Secret volume provides.)
*/}}
{{- define "accord.secretProperty" -}}
{{- if or (regexMatch "(?i)(password|secret|passphrase|credential)" .) (regexMatch "^(ssl\\.key\\.pem|ssl_key|sasl\\.username|sasl\\.oauthbearer\\.config|sasl\\.oauthbearer\\.assertion\\.private\\.key\\.pem)$" .) }}true{{ end }}
{{- end }}

{{/*
Kubernetes 1.31 or newer, when helm knows the cluster (install, upgrade, or template
with --kube-version). Offline, `helm template` without --kube-version assumes v1.20.0,
which is taken as "unknown" and passes.
*/}}
{{- define "accord.kubeVersion" -}}
{{- $v := .Capabilities.KubeVersion.Version }}
{{- if and (ne $v "v1.20.0") (semverCompare "<1.31.0-0" $v) }}
{{- fail (printf "Kubernetes %s is older than 1.31, the oldest this chart supports (policy/v1 PodDisruptionBudget with unhealthyPodEvictionPolicy)" $v) }}
{{- end }}
{{- end }}
