"""The "Glass Box" dashboard: server-rendered pages, kept live by our own small script."""
