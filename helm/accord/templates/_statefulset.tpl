{{/*
StatefulSet mode (workload.kind: StatefulSet), issue 12. The pod template is the
Deployment's (deployment.yaml renders either kind); this file holds what differs.

Each pod keeps its name (accord-0, accord-1, ...) across restarts, so with
`delivery: exactly_once` the gateway's default transactional.id
(`accord-<group>-<pod name>`) is stable: a restarted pod fences its predecessor and
aborts its open transaction at once, and nothing waits on the transaction timeout.
The audit trail gets a PersistentVolumeClaim per pod (audit.persistence), kept when
the StatefulSet is deleted or scaled down.
*/}}

{{- define "accord.workloadKind" -}}
{{- $k := .Values.workload.kind | default "Deployment" }}
{{- if not (has $k (list "Deployment" "StatefulSet")) }}
{{- fail (printf "workload.kind %q is not Deployment or StatefulSet" $k) }}
{{- end }}
{{- if and (eq $k "StatefulSet") .Values.config.kafka.transactionalId }}
{{- fail "config.kafka.transactionalId must be empty with workload.kind: StatefulSet: every pod would share it and fence the others; the default (accord-<group>-<pod name>) is stable per pod" }}
{{- end }}
{{- $k }}
{{- end }}

{{/* Non-empty when the audit volume comes from a volumeClaimTemplate. */}}
{{- define "accord.auditClaimTemplate" -}}
{{- if and .Values.audit.enabled (eq (include "accord.workloadKind" .) "StatefulSet") .Values.audit.persistence.enabled }}
{{- if .Values.audit.existingClaim }}
{{- fail "audit.existingClaim and audit.persistence.enabled exclude each other in StatefulSet mode: each pod gets its own claim from audit.persistence" }}
{{- end }}true
{{- end }}
{{- end }}

{{- define "accord.statefulSetSpec" -}}
# The admin Service governs the pods' identity (no DNS per pod is needed).
serviceName: {{ include "accord.fullname" . }}
# Pods start and stop together: the consumer group balances them, not the order.
podManagementPolicy: Parallel
updateStrategy:
  type: RollingUpdate
{{- if include "accord.auditClaimTemplate" . }}
persistentVolumeClaimRetentionPolicy:
  whenDeleted: Retain
  whenScaled: Retain
volumeClaimTemplates:
  - apiVersion: v1
    kind: PersistentVolumeClaim
    metadata:
      name: audit
      labels:
        {{- include "accord.selectorLabels" . | nindent 8 }}
    spec:
      accessModes:
        {{- toYaml .Values.audit.persistence.accessModes | nindent 8 }}
      {{- with .Values.audit.persistence.storageClassName }}
      storageClassName: {{ . }}
      {{- end }}
      resources:
        requests:
          storage: {{ .Values.audit.persistence.size }}
{{- end }}
{{- end }}
