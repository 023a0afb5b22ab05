// An access token with golang.org/x/oauth2/clientcredentials. The
// credentials come from the OAuthClient's Secret: CLIENT_ID, CLIENT_SECRET
// and TOKEN_URL in the environment.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func main() {
	config := clientcredentials.Config{
		ClientID:     os.Getenv("CLIENT_ID"),
		ClientSecret: os.Getenv("CLIENT_SECRET"),
		TokenURL:     os.Getenv("TOKEN_URL"),
		// HTTP Basic; this library form-encodes id and secret first, as
		// RFC 6749 2.3.1 requires. oauth2.AuthStyleInParams works too.
		AuthStyle: oauth2.AuthStyleInHeader,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	token, err := config.Token(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "token request failed:", err)
		os.Exit(1)
	}
	fmt.Printf("got a %s token valid until %s\n", token.TokenType, token.Expiry.Format(time.RFC3339))
	// config.Client(ctx) is an *http.Client that sends the token and fetches
	// a new one before it expires.
}
