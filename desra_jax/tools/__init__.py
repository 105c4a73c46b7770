"""The commands' work as functions over folders: read the images, call the pure functions of the library,
write the results (atomically) and a summary naming every file that could not be processed. The drivers in
`experiments/` parse flags and call these."""
