from services.conversations.server import main

main()
