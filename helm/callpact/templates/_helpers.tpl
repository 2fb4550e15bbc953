{{/* Names: the usual scheme of `helm create`, capped at 63 characters (DNS labels). */}}
{{- define "callpact.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "callpact.fullname" -}}
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

{{/* The full name of one component: api, worker, migrate. Call with (list $ "api"). */}}
{{- define "callpact.componentName" -}}
{{- $ctx := index . 0 }}
{{- printf "%s-%s" (include "callpact.fullname" $ctx | trunc 55 | trimSuffix "-") (index . 1) }}
{{- end }}

{{- define "callpact.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "callpact.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "callpact.selectorLabels" -}}
app.kubernetes.io/name: {{ include "callpact.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component. Call with (list $ "api"). */}}
{{- define "callpact.componentLabels" -}}
{{ include "callpact.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Selector labels of one component: never change them, a Deployment's selector is immutable. */}}
{{- define "callpact.componentSelectorLabels" -}}
{{ include "callpact.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "callpact.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "callpact.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "callpact.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret the pods read: an existing one, or the one this chart creates (same name). */}}
{{- define "callpact.secretName" -}}
{{- if and .Values.secrets.existingSecret .Values.secrets.values }}
{{- fail "set either secrets.existingSecret or secrets.values, not both" }}
{{- end }}
{{- default (include "callpact.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* API_PUBLIC_URL: as given, else the first ingress host. */}}
{{- define "callpact.publicUrl" -}}
{{- if .Values.config.apiPublicUrl }}
{{- .Values.config.apiPublicUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- printf "%s://%s" (ternary "https" "http" (not (empty .Values.ingress.tls))) (first .Values.ingress.hosts).host }}
{{- end }}
{{- end }}

{{/*
Non-secret settings as a YAML map of strings: the ConfigMap's data, and the migration job's
inline env (a pre-install hook runs before the ConfigMap exists).
*/}}
{{- define "callpact.config" -}}
CALLPACT_ENV: "production"
LOG_LEVEL: {{ .Values.config.logLevel | quote }}
LOG_FORMAT: {{ .Values.config.logFormat | quote }}
DATABASE_STATEMENT_TIMEOUT_MS: {{ .Values.config.databaseStatementTimeoutMs | int64 | toString | quote }}
DATABASE_POOL_SIZE: {{ .Values.config.databasePoolSize | int64 | toString | quote }}
DATABASE_POOL_TIMEOUT_S: {{ .Values.config.databasePoolTimeoutS | toString | quote }}
DATABASE_READ_PARALLELISM: {{ .Values.config.databaseReadParallelism | int64 | toString | quote }}
REDIS_SOCKET_TIMEOUT_S: {{ .Values.config.redisSocketTimeoutS | toString | quote }}
SMTP_FROM: {{ .Values.config.smtpFrom | quote }}
{{- with include "callpact.publicUrl" . }}
API_PUBLIC_URL: {{ . | quote }}
{{- end }}
API_MAX_BODY_BYTES: {{ .Values.config.apiMaxBodyBytes | int64 | toString | quote }}
OIDC_ALLOW_PRIVATE_ISSUERS: {{ .Values.config.oidcAllowPrivateIssuers | toString | quote }}
{{- end }}

{{/*
Secret env vars, each a secretKeyRef (pipe through trim before nindent). Call with (dict "ctx" $ "keys" (list …) "optional" (list …)).
One reference per key, not envFrom, so that a pod receives exactly the secrets it needs: the
owner's DATABASE_URL reaches only the migration job.
*/}}
{{- define "callpact.secretEnv" -}}
{{- $name := include "callpact.secretName" .ctx }}
{{- range .keys }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ . }}
{{- end }}
{{- range .optional }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ . }}
      optional: true
{{- end }}
{{- end }}

{{/* The secrets the API and the worker get: no DATABASE_URL. */}}
{{- define "callpact.runtimeSecretKeys" -}}
{{- list "DATABASE_APP_URL" "DATABASE_ADMIN_URL" "REDIS_URL" "SMTP_URL" "AUTH_PLATFORM_ADMIN_TOKEN" "AUTH_SECRET_KEY" | toJson }}
{{- end }}

{{/*
Pod annotations shared by the API and the worker. The checksums roll the pods when settings
change: env is read once at start, so a changed ConfigMap alone would go unnoticed.
*/}}
{{- define "callpact.podAnnotations" -}}
checksum/config: {{ include "callpact.config" . | sha256sum }}
{{- if .Values.secrets.values }}
checksum/secret: {{ toJson .Values.secrets.values | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Writable scratch volumes under the read-only root filesystem. */}}
{{- define "callpact.volumes" -}}
- name: tmp
  emptyDir:
    {{- with .Values.scratch.tmpSizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
- name: var
  emptyDir:
    {{- with .Values.scratch.varSizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- end }}

{{- define "callpact.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: var
  mountPath: /app/var
{{- end }}

{{/*
Pod-level fields every workload shares. automountServiceAccountToken: the app never talks to
the Kubernetes API. enableServiceLinks: Kubernetes would otherwise inject <SERVICE>_PORT
variables for every Service in the namespace, and a Service named "api" would set API_PORT to
"tcp://…", which the settings would read (and reject) as the API port.
*/}}
{{- define "callpact.podCommon" -}}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  {{- include "callpact.volumes" . | nindent 2 }}
{{- end }}

{{/*
Topology spread constraints of one component; a constraint without a labelSelector gets the
component's selector labels, so values need not repeat the release's labels.
Call with (list $ "api" constraints); pipe through trim before nindent.
*/}}
{{- define "callpact.topologySpread" -}}
{{- $selector := include "callpact.componentSelectorLabels" (list (index . 0) (index . 1)) | fromYaml }}
{{- range (index . 2) }}
- {{ merge (deepCopy .) (dict "labelSelector" (dict "matchLabels" $selector)) | toYaml | nindent 2 | trim }}
{{- end }}
{{- end }}
