"""Notifiers: alerts from the alerts topic turned into webhook, Slack, PagerDuty and mail messages
(docs/alerting.md)."""
