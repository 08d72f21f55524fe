"""The search loop and its stages: the loop that keeps executor slots busy, stage 1 (propose, measure,
train, learn), stage 2 (full training of the winners), early stopping and the observers."""
