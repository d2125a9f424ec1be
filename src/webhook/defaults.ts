// Flag defaults, kept apart so that the CLI does not load the webhook to print its help.
import { DEFAULT_WEBHOOK_FILES } from "./patch";

export const WEBHOOK_DEFAULTS = {
  listen: ":8443",
  serviceName: "procview-webhook",
  secretName: "procview-webhook-certs",
  webhookConfigName: "procview",
  files: DEFAULT_WEBHOOK_FILES.join(","),
  volumes: "hostPath",
  certValidity: "365d",
  caValidity: "3650d",
  certCheckInterval: "1h",
  logLevel: "info",
};
