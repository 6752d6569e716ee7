"""Small apps of the kinds the lab's users have, each with the story's bug behind one setting."""
