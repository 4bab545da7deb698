"""What is scored: files, standard input and dataset records (chats rendered later) -> Documents."""
