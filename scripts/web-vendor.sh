#!/usr/bin/env bash
# Fetches the topology page's JavaScript libraries (placeholder until the web view lands).
exit 0
