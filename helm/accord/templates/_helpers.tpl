{{/*
Names, labels, and the gateway configuration the chart writes.
*/}}

{{- define "accord.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "accord.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "accord.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "accord.selectorLabels" -}}
app.kubernetes.io/name: {{ include "accord.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "accord.labels" -}}
helm.sh/chart: {{ include "accord.chart" . }}
{{ include "accord.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: accord
{{- end }}

{{- define "accord.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "accord.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "accord.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The ConfigMap names. */}}
{{- define "accord.configName" -}}
{{- printf "%s-config" (include "accord.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "accord.agreementName" -}}
{{- if .Values.agreement.existingConfigMap }}
{{- .Values.agreement.existingConfigMap }}
{{- else }}
{{- printf "%s-agreement" (include "accord.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Where the pod finds its files. */}}
{{- define "accord.configDir" -}}/etc/accord{{- end }}
{{- define "accord.keyDir" -}}/var/run/secrets/accord{{- end }}
{{- define "accord.auditKeyDir" -}}/var/run/secrets/accord-audit{{- end }}

{{/*
config.limits.drainTimeout in whole seconds (rounded up). The gateway takes `500ms`,
`20s`, `1m`, `1h`; so does this.
*/}}
{{- define "accord.drainSeconds" -}}
{{- $d := toString .Values.config.limits.drainTimeout | trim }}
{{- if not (regexMatch "^[0-9]+(ms|s|m|h)$" $d) }}
{{- fail (printf "config.limits.drainTimeout %q is not a duration such as 500ms, 20s or 1m" $d) }}
{{- end }}
{{- $n := regexFind "^[0-9]+" $d | atoi }}
{{- $unit := regexReplaceAll "^[0-9]+" $d "" }}
{{- if eq $unit "ms" }}{{ div (add $n 999) 1000 }}
{{- else if eq $unit "s" }}{{ $n }}
{{- else if eq $unit "m" }}{{ mul $n 60 }}
{{- else }}{{ mul $n 3600 }}
{{- end }}
{{- end }}

{{/*
Everything the chart cannot render without, checked once, each with a sentence that
says what to set.
*/}}
{{- define "accord.validate" -}}
{{- include "accord.kubeVersion" . }}
{{- $k := .Values.config.kafka }}
{{- if not $k.brokers }}
{{- fail "config.kafka.brokers is required: the Kafka bootstrap brokers, e.g. [kafka-0.kafka:9092, kafka-1.kafka:9092]" }}
{{- end }}
{{- if not $k.input.topics }}
{{- fail "config.kafka.input.topics is required: the raw sensor topics the gateway reads" }}
{{- end }}
{{- if has $k.quarantineTopic $k.input.topics }}
{{- fail (printf "config.kafka.quarantineTopic %q is also an input topic; quarantine notes would be read back as events" $k.quarantineTopic) }}
{{- end }}
{{- if and $k.transactionalId (ne $k.delivery "exactly_once") }}
{{- fail "config.kafka.transactionalId is only used with config.kafka.delivery: exactly_once" }}
{{- end }}
{{- range $section := list "properties" "consumer" "producer" }}
{{- range $name, $value := (index $k $section) }}
{{- if and (include "accord.secretProperty" $name) (not (regexMatch "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$" (toString $value))) }}
{{- fail (printf "config.kafka.%s.%s holds a literal secret: write it as ${NAME} and hand NAME over from a Secret with `env` (values end up in the release history in clear text)" $section $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- $a := .Values.agreement }}
{{- if $a.existingConfigMap }}
{{- if or $a.content $a.extraFiles $a.extraBinaryFiles }}
{{- fail "agreement.existingConfigMap is set: leave agreement.content, extraFiles and extraBinaryFiles empty (that ConfigMap holds the agreement and its signatures)" }}
{{- end }}
{{- else if not $a.content }}
{{- fail "agreement.content is required (e.g. --set-file agreement.content=agreement.yaml), or name your own ConfigMap in agreement.existingConfigMap" }}
{{- end }}
{{- if or (hasKey $a.extraFiles $a.fileName) (hasKey $a.extraBinaryFiles $a.fileName) (hasKey $a.extraFiles "gateway.yaml") (hasKey $a.extraBinaryFiles "gateway.yaml") }}
{{- fail (printf "agreement.extraFiles and extraBinaryFiles cannot be named %q or \"gateway.yaml\"" $a.fileName) }}
{{- end }}
{{- $p := .Values.pseudonymKey }}
{{- if not $p.existingSecret }}
{{- fail "pseudonymKey.existingSecret is required: the name of a Secret holding the pseudonym key (at least 32 random bytes); the chart never takes the key itself. Create it with: kubectl create secret generic accord-key --from-file=key=./key" }}
{{- end }}
{{- if and (not $p.id) (not $p.idSecretKey) }}
{{- fail "pseudonymKey.id is required: the key's public id, the prefix of every pseudonym (or set pseudonymKey.idSecretKey to read it from the Secret)" }}
{{- end }}
{{- if and $p.id $p.idSecretKey }}
{{- fail "set pseudonymKey.id or pseudonymKey.idSecretKey, not both" }}
{{- end }}
{{- $audit := .Values.audit }}
{{- if and $audit.enabled (not $audit.signingKey.existingSecret) }}
{{- fail "audit.signingKey.existingSecret is required when audit.enabled: the Secret holding the audit key that signs the trail's checkpoints (a trail without them never verifies). Create it with: accord keygen --audit --out ./audit-key && kubectl create secret generic accord-audit-key --from-file=audit.key=./audit-key/audit.key" }}
{{- end }}
{{- if and $audit.enabled (eq $audit.signingKey.existingSecret $p.existingSecret) }}
{{- fail "audit.signingKey.existingSecret names the pseudonym key's Secret: keep the audit key in a Secret of its own, apart from those who run the pipeline" }}
{{- end }}
{{- $drain := include "accord.drainSeconds" . | atoi }}
{{- if lt (int .Values.terminationGracePeriodSeconds) (add $drain 15) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed config.limits.drainTimeout (%s) by at least 15 s: the gateway gives itself the drain timeout plus 10 s after SIGTERM, and SIGKILL must not come first" (int .Values.terminationGracePeriodSeconds) (toString .Values.config.limits.drainTimeout)) }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.brokers) }}
{{- fail "networkPolicy.brokers is required when networkPolicy.enabled: the peers (ipBlock, namespaceSelector/podSelector) where the Kafka brokers run" }}
{{- end }}
{{- end }}

{{/* The admin address as the gateway parses it (IP:port, IPv6 in brackets). */}}
{{- define "accord.adminAddress" -}}
{{- if contains ":" .Values.admin.bindAddress }}
{{- printf "[%s]:%d" .Values.admin.bindAddress (int .Values.admin.port) }}
{{- else }}
{{- printf "%s:%d" .Values.admin.bindAddress (int .Values.admin.port) }}
{{- end }}
{{- end }}

{{/*
gateway.yaml, as gateway/config.rs reads it. Keys the gateway defaults are written
anyway, so what runs is what this file says.
*/}}
{{- define "accord.gatewayConfig" -}}
{{- $k := .Values.config.kafka }}
{{- $brokers := $k.brokers }}
{{- if kindIs "slice" $brokers }}{{ $brokers = join "," $brokers }}{{ end }}
{{- $key := dict "file" (printf "%s/key" (include "accord.keyDir" .)) }}
{{- if .Values.pseudonymKey.id }}{{ $_ := set $key "id" (toString .Values.pseudonymKey.id) }}{{ end }}
{{- $kafka := dict
    "brokers" $brokers
    "group" $k.group
    "input" (dict "topics" $k.input.topics "format" $k.input.format)
    "output" (dict "format" $k.output.format)
    "quarantine_topic" $k.quarantineTopic
    "delivery" $k.delivery }}
{{- if $k.transactionalId }}{{ $_ := set $kafka "transactional_id" $k.transactionalId }}{{ end }}
{{- if $k.properties }}{{ $_ := set $kafka "properties" $k.properties }}{{ end }}
{{- if $k.consumer }}{{ $_ := set $kafka "consumer" $k.consumer }}{{ end }}
{{- if $k.producer }}{{ $_ := set $kafka "producer" $k.producer }}{{ end }}
{{- $l := .Values.config.limits }}
{{- $config := dict
    "agreement" (printf "%s/%s" (include "accord.configDir" .) .Values.agreement.fileName)
    "pseudonym_key" $key
    "admin" (dict "address" (include "accord.adminAddress" .))
    "kafka" $kafka
    "limits" (dict "max_in_flight" (int64 $l.maxInFlight) "drain_timeout" (toString $l.drainTimeout)) }}
{{- if $l.commitInterval }}{{ $_ := set $config.limits "commit_interval" (toString $l.commitInterval) }}{{ end }}
{{- if $l.threads }}{{ $_ := set $config.limits "threads" (int64 $l.threads) }}{{ end }}
{{- if $l.stuckAfter }}{{ $_ := set $config.limits "stuck_after" (toString $l.stuckAfter) }}{{ end }}
{{- if .Values.config.suppressionsTopic }}{{ $_ := set $config "suppressions" (dict "topic" .Values.config.suppressionsTopic) }}{{ end }}
{{- $config = mergeOverwrite $config (deepCopy .Values.config.extra) }}
{{- toYaml $config }}
{{- end }}

{{/*
A string as the value of a map key at indent 2, exactly: toYaml picks a literal
block (`|`, `|-`, with an indentation indicator when needed) or a quoted scalar, and
the block is shifted under the key; only the one newline toYaml adds is removed.
A block that keeps trailing blank lines (`|+`) becomes a JSON string instead: helm
trims trailing whitespace at the end of a rendered file, which would cut them off.
*/}}
{{- define "accord.yamlString" -}}
{{- $s := toString . }}
{{- $y := toYaml $s }}
{{- if regexMatch "^[|>][^\\n]*[+]" $y }}
{{- toJson $s }}
{{- else }}
{{- $y | trimSuffix "\n" | indent 2 | trimPrefix "  " }}
{{- end }}
{{- end }}
