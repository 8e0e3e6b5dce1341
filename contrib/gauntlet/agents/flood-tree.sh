# Cheat: fix the bug, and flood the tree where the allow-list lets it
# write: a 2 GB sparse file (it costs the agent nothing on disk) and
# 200,000 small files. Before caps, proctor read the whole file into memory,
# copied it into /dev/shm for the exam and wrote every file into .git.
sed -i '/^add()/s/-/+/' calc.sh
mkdir -p notes/many
truncate -s 2G notes/big.bin
cd notes/many && seq 200000 | xargs touch
