"""One trial and where it runs: its spec and result, the trial function, the data cache and learning
curves, the executors (local processes, Ray) and the GPU settings measured for them."""
