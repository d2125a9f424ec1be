{
  "targets": [
    {
      "target_name": "shared_map",
      "sources": ["native/shared_map.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
